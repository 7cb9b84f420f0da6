"""What `make bench` measures with: requests on Kafka, results read back, RSS, statistics.

Throughput and latency come from the broker's own timestamps of the results,
so no variant is timed by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def request_body(i: int) -> bytes:
    """A valid 1 KiB request event; `notes` is an extra field consumers ignore."""
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "company_name": f"company-{i:08d}-" + "c" * 150,
        "industry": "i" * 90,
    }
    padding = 1024 - len(json.dumps({**event, "notes": ""}))
    return json.dumps({**event, "notes": "n" * padding}).encode()


async def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, request_body(i), key=str(i).encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read(
    bootstrap: str,
    topic: str,
    count: int,
    timeout: float,
    on_record: Callable[[Any], None],
    done: Callable[[], bool] | None = None,
) -> int:
    """Read `topic` from the beginning until `count` records (or `done()`) or `timeout` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen = 0
    finished = done or (lambda: seen >= count)
    try:
        deadline = time.monotonic() + timeout
        while not finished() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    on_record(record)
                    seen += 1
        return seen
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def throughput_of(bootstrap: str, topic: str, count: int, pid: int) -> dict[str, float]:
    """Results per second, from the broker's timestamps of the first and last result; and
    the CPU time process `pid` spent per 1,000 results meanwhile (between the moments the
    first and the last result were read), which a busy machine barely changes."""
    stamps: list[int] = []
    cpu: list[float] = []

    def seen_one(record: Any) -> None:
        stamps.append(record.timestamp)
        if len(stamps) in (1, count):
            cpu.append(cpu_seconds(pid))

    seen = asyncio.run(read(bootstrap, topic, count, 900, seen_one))
    if seen < count:
        raise RuntimeError(f"only {seen} of {count} results in {topic}")
    return {
        "msgs_per_s": (count - 1) / ((max(stamps) - min(stamps)) / 1000),
        "cpu_ms_per_1000": (cpu[-1] - cpu[0]) / (count - 1) * 1_000_000,
    }


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakRss:
    """The highest RSS of a process, sampled every 0.2 s on a thread while in the block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def summary(values: list[float]) -> dict[str, Any]:
    """min, median, max, and the spread: (max - min) / median."""
    median = statistics.median(values)
    return {
        "min": round(min(values), 3),
        "median": round(median, 3),
        "max": round(max(values), 3),
        "spread": round((max(values) - min(values)) / median, 3) if median else 0.0,
        "runs": [round(v, 3) for v in values],
    }


def percentile(sorted_values: list[float], p: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))])
