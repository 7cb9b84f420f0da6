"""Sending the handlers' results: the hot path of every service.

A consumed batch's results go out through an `Outbox`: appended to aiokafka's
record batches (`create_batch`/`send_batch`, aiokafka's documented batch API),
one per partition, each handed to the producer as soon as it is full and the
rest when the consumed batch is done; the batch is committed once every one is
acknowledged. Per result that costs a partition choice and an append in C;
aiokafka's `send` also awaits two coroutines and makes a future per message, and
FastStream's publishers cost more again (measured in `make bench`: see
docs/benchmarks.md). Results are partitioned by their key with the producer's
own partitioner, as `send` would.

FastStream's publisher of each results topic is still declared, so the AsyncAPI
document shows its schema (and `testing.TestService`, on FastStream's in-memory
broker, sends the results through it).
"""

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from faststream.kafka.publisher import DefaultPublisher

from . import clients
from .health import Writes
from .security import aiokafka_security
from .settings import ServiceSettings

Headers = list[tuple[str, bytes]]


class Outbox(Protocol):
    """Where one consumed batch's results go, until all are acknowledged."""

    async def add(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        """Queue one result; it may leave at once."""

    async def delivered(self) -> int:
        """Send what is queued and wait for every acknowledgement; how many results."""


class KafkaOutbox:
    """Results appended to aiokafka record batches, one open batch per partition."""

    def __init__(
        self, producer: AIOKafkaProducer, partitioner: DefaultPartitioner, writes: Writes
    ) -> None:
        self.producer = producer
        self.partitioner = partitioner
        self.writes = writes
        self.partitions: dict[str, list[int]] = {}
        self.open: dict[tuple[str, int], BatchBuilder] = {}
        self.sent: list[Awaitable[Any]] = []
        self.count = 0

    async def add(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        partitions = self.partitions.get(topic)
        if partitions is None:  # the producer's metadata, once per topic and batch
            partitions = self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        partition = self.partitioner(key, partitions, partitions)
        builder = self.open.get((topic, partition))
        if builder is None or _append(builder, value, key, headers) is None:
            if builder is not None:  # full: it leaves now, the result starts the next
                await self._send(topic, partition, builder)
            builder = self.open[(topic, partition)] = self.producer.create_batch()
            _append(builder, value, key, headers)  # an empty batch takes any record
        self.count += 1

    async def delivered(self) -> int:
        for (topic, partition), builder in self.open.items():
            await self._send(topic, partition, builder)
        self.open.clear()
        if self.sent:
            with self.writes.waiting():
                await asyncio.gather(*self.sent)
            self.writes.acknowledged()
        return self.count

    async def _send(self, topic: str, partition: int, builder: BatchBuilder) -> None:
        self.sent.append(await self.producer.send_batch(builder, topic, partition=partition))


def _append(builder: BatchBuilder, value: bytes, key: bytes | None, headers: Headers) -> Any:
    """The record's metadata, or None when the batch is full."""
    return builder.append(timestamp=None, key=key, value=value, headers=headers)


class Results:
    """The results' producer, started and stopped with the service's Kafka connection."""

    def __init__(self, settings: ServiceSettings, writes: Writes) -> None:
        self.settings = settings
        self.writes = writes
        self.publishers: dict[str, DefaultPublisher] = {}  # by topic: the documented ones
        self.producer: AIOKafkaProducer | None = None
        self.partitioner = DefaultPartitioner()

    def declare(self, topic: str, publisher: DefaultPublisher) -> None:
        self.publishers[topic] = publisher

    def outbox(self) -> Outbox:
        """A new outbox for one consumed batch."""
        if self.producer is None:
            raise RuntimeError("the results' producer is not started")
        return KafkaOutbox(self.producer, self.partitioner, self.writes)

    async def start(self) -> None:
        if not self.publishers:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id=f"{self.settings.service_id}-results",
            partitioner=self.partitioner,
            **clients.producer(self.settings),
            **aiokafka_security(self.settings),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # else aiokafka logs an unclosed producer
            raise
        self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()  # sends what is buffered first
            self.producer = None
