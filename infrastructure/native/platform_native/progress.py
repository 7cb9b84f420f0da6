"""Progress lines for long steps: what runs, for how long, and a sign of life.

A cold start builds Kafka, Consul, Jaeger, Prometheus and decK for minutes.
The rule (GUIDE.md, issue 12) is one line per step with its elapsed time and
never 30 s without a line, so a person or a CI log can tell a slow build from
a hung one. Lines go to stdout, flushed at once.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Seconds between two "still running" lines; half the 30 s rule.
HEARTBEAT_SECONDS = 15.0

Writer = Callable[[str], None]


_one_at_a_time = threading.Lock()  # builds run two at a time; their lines must not mix


def say(line: str) -> None:
    """Print one progress line now (unbuffered, even when stdout is a pipe)."""
    with _one_at_a_time:
        print(line, file=sys.stdout, flush=True)


def elapsed(seconds: float) -> str:
    """``7.2s``, ``45s``, ``2m15s``, ``1h03m``: short and readable in a log."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@contextmanager
def heartbeat(label: str, detail: str = "", write: Writer = say) -> Iterator[None]:
    """Print ``<label> … <elapsed><detail>`` every HEARTBEAT_SECONDS until the block ends.

    E.g. ``building consul 1.21.0 … 2m15s, log: ~/.cache/event-platform/logs/...``.
    """
    started = time.monotonic()
    done = threading.Event()
    every = HEARTBEAT_SECONDS

    def beat() -> None:
        while not done.wait(every):
            write(f"    {label} … {elapsed(time.monotonic() - started)}{detail}")

    thread = threading.Thread(target=beat, name=f"heartbeat: {label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
