"""What `make bench` measures with: requests on Kafka, results read back, RSS, statistics.

No variant is timed by the code under test. The bench topics are created with
`message.timestamp.type=LogAppendTime`: the broker stamps each record as it appends
it, overwriting what the producer set, so latencies end at a broker timestamp.
Throughput is counted from outside too: the results topic's end offsets, read by
the bench at the start and the end of a steady window.
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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


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


BROKER_TIME = {"message.timestamp.type": "LogAppendTime"}


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Topics stamped by the broker (LogAppendTime); existing ones are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, partitions, 1, topic_configs=BROKER_TIME)
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Drop a finished run's topics, so the runs' data does not pile up on disk."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, count: int, first: int = 0) -> None:
    """`count` requests, numbered (and keyed) from `first`, through record batches (several
    times faster than `send` each: the source of a run holds hundreds of thousands)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1 << 19)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        builders = {p: producer.create_batch() for p in partitions}
        pending = []
        for i in range(first, first + count):
            key = str(i).encode()
            partition = partitions[i % len(partitions)]
            if builders[partition].append(key=key, value=request_body(i), timestamp=None) is None:
                pending.append(
                    await producer.send_batch(builders[partition], topic, partition=partition)
                )
                builders[partition] = producer.create_batch()
                builders[partition].append(key=key, value=request_body(i), timestamp=None)
            if len(pending) >= 50:
                await asyncio.gather(*pending)
                pending.clear()
        for partition, builder in builders.items():
            pending.append(await producer.send_batch(builder, topic, partition=partition))
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


async def results_out(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    """How many results the topic holds: the sum of its partitions' end offsets."""
    return sum((await consumer.end_offsets(partitions)).values())


async def steady_throughput(
    bootstrap: str,
    topic: str,
    pid: int,
    alive: Callable[[], bool],
    warmup: float,
    seconds: float,
    partitions: int,
) -> dict[str, float]:
    """Results per second over `seconds` of steady state, counted from outside.

    The window opens `warmup` s after the first result reaches `topic` (start-up
    rebalances and the first fetches fall before it) and closes `seconds` later; the
    results in it come from the topic's end offsets at both ends, read by the bench,
    and the CPU time process `pid` spent per 1,000 of them from /proc. The warm-up's
    own rate and the time to the first result are reported beside it.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    owned = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        began = time.monotonic()
        while not await results_out(consumer, owned):
            if not alive():
                raise RuntimeError(f"the variant producing {topic} exited")
            if time.monotonic() - began > 120:
                raise RuntimeError(f"no result in {topic} after 120 s")
            await asyncio.sleep(0.05)
        first = time.monotonic()
        await asyncio.sleep(warmup)
        opened, out_at_open, cpu_at_open = (
            time.monotonic(),
            await results_out(consumer, owned),
            cpu_seconds(pid),
        )
        await asyncio.sleep(seconds)
        closed, out_at_close, cpu_at_close = (
            time.monotonic(),
            await results_out(consumer, owned),
            cpu_seconds(pid),
        )
        if not alive():
            raise RuntimeError(f"the variant producing {topic} exited during the window")
    finally:
        await consumer.stop()
    handled = out_at_close - out_at_open
    return {
        "msgs_per_s": handled / (closed - opened),
        "cpu_ms_per_1000": (cpu_at_close - cpu_at_open) / max(handled, 1) * 1_000_000,
        "window_s": closed - opened,
        "warmup_msgs_per_s": out_at_open / (opened - first),
        "first_result_s": first - began,
        "results_at_close": out_at_close,
    }


def settle(kafka_logs: Path, timeout: float = 120.0) -> dict[str, float]:
    """Let the broker finish the throughput runs' clean-up before latency is measured.

    Those runs write gigabytes to Kafka's logs and delete their topics. The broker
    removes a deleted partition's files a minute later (`file.delete.delay.ms`), and
    the kernel writes dirty pages back in the background: either would fall into the
    first latency start. This waits until no partition awaits deletion, then flushes
    the page cache, and returns how much of each there was and how long it took. (The
    first start was still the slowest with this wait: see `run.latencies` for why.)
    """
    began = time.monotonic()
    deleting = len(list(kafka_logs.glob("*-delete")))
    while any(kafka_logs.glob("*-delete")) and time.monotonic() - began < timeout:
        time.sleep(1)
    waited = time.monotonic() - began
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    dirty = sum(int(fields[name].split()[0]) for name in ("Dirty", "Writeback")) / 1024
    flushing = time.monotonic()
    os.sync()
    return {
        "partitions_deleting": deleting,
        "deletion_wait_s": round(waited, 1),
        "dirty_mib": round(dirty, 1),
        "sync_s": round(time.monotonic() - flushing, 2),
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
