"""Everything `make test` builds, built before pytest starts, one line per build.

pytest-xdist's workers print nothing to the terminal: the builds the conftest starts at
collection would, on a cold machine, run for many minutes without a line, and `make
cold-test`, which times each build from those lines, would find none. Run first, they print
here, and the workers find them in the cache. The exception is the stand-in base image: it
needs the private Docker engine, which only its tests start.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infrastructure" / "native"))

from platform_native import progress
from platform_native.__main__ import build_all
from tests.harness import actionlint
from tests.harness.docker import compose
from tests.harness.kubernetes import build_kubernetes_tools

TOOLS: dict[str, tuple[str, Callable[[], Path]]] = {
    "docker-compose": (compose.VERSION, compose.build_plugins),
    "actionlint": (actionlint.VERSION, actionlint.build_actionlint),
}


def main() -> None:
    build_all()
    build_kubernetes_tools(api_server=True)
    progress.say("==> building the other test tools")
    for name, (version, build) in TOOLS.items():
        started = time.monotonic()
        path = build()
        progress.say(
            f"    {name} {version}: {path} ({progress.elapsed(time.monotonic() - started)})"
        )


if __name__ == "__main__":
    main()
