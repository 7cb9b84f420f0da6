"""Plain aiokafka clients for the tests: topics made, one record through Kafka, as a
service's client would send it; a topic read back, its end offsets, a group's committed
offsets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from platform_deploy.topics import create_missing_topics
from platform_native.servers import Kafka

PARTITIONS = 3  # of the topics the tests create


def create_topics(kafka: Kafka, names: Sequence[str], partitions: int = PARTITIONS) -> None:
    """Create the missing topics, replicated as the cluster allows, as ./deploy-all.sh does
    (platform_deploy.topics), in one admin request from this process.

    ``Kafka.create_topics`` runs Kafka's TopicCommand, a JVM per topic, since
    platform_native needs nothing beyond the standard library. Those JVMs took 142 s of
    CPU in one `make test`, 6 % of all it used.
    """
    asyncio.run(create_missing_topics(kafka.bootstrap, dict.fromkeys(names, partitions)))


async def produce_and_consume(topic: str, payload: bytes, **client: Any) -> bytes:
    """Produce ``payload`` (acks=all), then read the topic's first record back.

    ``client`` holds the connection settings (bootstrap_servers, security, ...).
    """
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=10_000, **client)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"key")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", group_id=None, **client)
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert record.value is not None
    return bytes(record.value)


def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float,
    **client: Any,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `topic` from the beginning until `done(records)` or the timeout.

    ``client`` holds further connection settings (TLS, SASL) for a secured listener.
    """

    async def run() -> list[ConsumerRecord[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            **{"isolation_level": "read_committed", **client},  # as the services read
        )
        await consumer.start()
        try:
            records: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + timeout
            while not done(records) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                records += [record for batch in batches.values() for record in batch]
            return records
        finally:
            await consumer.stop()

    return asyncio.run(run())


def end_offsets(
    bootstrap: str, topic: str, partitions: int = PARTITIONS, timeout: float | None = None
) -> dict[int, int]:
    """The end offset of each partition of `topic` (how many records each holds).

    `timeout`: give up after that many seconds (TimeoutError). Without it, a broker that
    is starting or frozen can hold one count for aiokafka's 40 s request timeout.
    """

    async def run() -> dict[int, int]:
        request_timeout = {"request_timeout_ms": int(timeout * 1000)} if timeout else {}
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **request_timeout)
        await consumer.start()
        try:
            wanted = [TopicPartition(topic, p) for p in range(partitions)]
            ends = await consumer.end_offsets(wanted)
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            await consumer.stop()

    return asyncio.run(asyncio.wait_for(run(), 2 * timeout if timeout else None))


def committed(
    bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS
) -> dict[int, int]:
    """The consumer group's committed offsets (-1: nothing committed)."""

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            result = {}
            for p in range(partitions):
                offset = await consumer.committed(TopicPartition(topic, p))
                result[p] = -1 if offset is None else offset
            return result
        finally:
            await consumer.stop()

    return asyncio.run(run())
