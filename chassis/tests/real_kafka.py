"""Helpers for the tests against a real Kafka broker: topics, producing, counting.

Each test names its records (the key is the name) and counts, from what reached the
results and dead-letter topics, how many were lost and how many came twice.
"""

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from event_chassis.testing import test_settings

from .example import Requested, Settings

Headers = list[tuple[str, bytes | None]]
Record = tuple[str, bytes, Headers]  # name (the key), value, headers


def bootstrap() -> str:
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"]


async def fresh_settings(partitions: int = 3, **overrides: Any) -> Settings:
    """Settings for a service on its own new topics (`partitions` each), one consumer."""
    name = f"chassis-{uuid.uuid4().hex[:8]}"
    settings = test_settings(
        Settings,
        kafka_bootstrap_servers=bootstrap(),
        consumer_group=name,
        consumes_topic=f"{name}.requested",
        produces_topic=f"{name}.created",
        dead_letter_topic=f"{name}.dead-letter",
        **{
            "consumer_workers": 1,
            "kafka_check_interval_seconds": 0.5,
            "shutdown_grace_seconds": 10,
            **overrides,
        },
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    await admin.start()
    try:
        topics = (settings.consumes_topic, settings.produces_topic, settings.dead_letter_topic)
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()
    return settings


def request(name: str) -> bytes:
    return Requested(name=name).model_dump_json().encode()


def plain(count: int) -> list[Record]:
    """`count` good requests named n0, n1, ... without headers."""
    return [(f"n{i}", request(f"n{i}"), []) for i in range(count)]


async def produce(topic: str, records: Iterable[Record], per_second: float = 0) -> list[str]:
    """Send (name, value, headers) records keyed by name; their names, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), max_request_size=2 * 1024 * 1024)
    await producer.start()
    names = []
    try:
        for name, value, headers in records:
            await producer.send(topic, value, key=name.encode(), headers=headers)
            names.append(name)
            if per_second:
                await asyncio.sleep(1 / per_second)
        await producer.flush()
    finally:
        await producer.stop()
    return names


async def read(topic: str, seconds: float = 5.0) -> list[Any]:
    """Every record on `topic` now (reading stops after `seconds` with nothing new)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap(),
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # as the services read (see relay)
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=int(seconds * 1000)):
            records += [record for part in batch.values() for record in part]
    finally:
        await consumer.stop()
    return records


@dataclass
class Delivery:
    """What became of the records sent: lost, delivered twice, dead-lettered."""

    sent: list[str]
    results: Counter[str]
    dead_letters: Counter[str]

    @property
    def lost(self) -> list[str]:
        return [name for name in self.sent if not (self.results[name] or self.dead_letters[name])]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in (self.results + self.dead_letters).values() if n > 1)

    def report(self, case: str, **figures: Any) -> None:
        """Print the counts; with DELIVERY_REPORT set, append them there as a JSON line
        (the platform's `make report` puts them in docs/reliability.md)."""
        print(case, self, figures)
        if path := os.environ.get("DELIVERY_REPORT"):
            counts = {"sent": len(self.sent), "results": sum(self.results.values())}
            counts |= {"dead_letters": sum(self.dead_letters.values())}
            counts |= {"lost": len(self.lost), "duplicates": self.duplicates}
            with open(path, "a") as lines:
                lines.write(json.dumps({"case": case, **counts, **figures}) + "\n")

    def __str__(self) -> str:
        return (
            f"{len(self.sent)} sent, {sum(self.results.values())} results, "
            f"{sum(self.dead_letters.values())} dead letters, {len(self.lost)} lost, "
            f"{self.duplicates} duplicates"
        )


async def delivery(settings: Settings, sent: list[str]) -> Delivery:
    results = Counter(r.key.decode() for r in await read(settings.produces_topic, 2))
    dead = Counter(r.key.decode() for r in await read(settings.dead_letter_topic, 2))
    return Delivery(sent, results, dead)


async def committed(settings: Settings, partitions: int = 3) -> int:
    """The group's committed offsets on the consumed topic, summed over its partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), group_id=settings.consumer_group)
    await consumer.start()
    try:
        topic = settings.consumes_topic
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
        return sum(offset or 0 for offset in offsets)
    finally:
        await consumer.stop()


async def until(check: Callable[[], object], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
