"""One record through Kafka with plain aiokafka, as a service's client would send it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


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
