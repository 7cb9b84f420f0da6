"""Against a real Kafka broker (marker `kafka`; the platform's `make test` runs these
with `KAFKA_BOOTSTRAP_SERVERS` pointing at the Kafka it starts).

What the in-memory broker cannot show: commits, the lag read from aiokafka's
consumer behind FastStream's message, readiness once the group is joined, and
a drain that stops fetching and commits exactly what was handled.
"""

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from event_chassis import Service
from event_chassis.testing import test_settings

from .example import Created, Requested, Settings
from .real_kafka import committed, until

pytestmark = pytest.mark.kafka

PARTITIONS = 2


@pytest.fixture
def bootstrap() -> str:
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture
async def settings(bootstrap: str) -> AsyncIterator[Settings]:
    name = f"chassis-{uuid.uuid4().hex[:8]}"
    settings = test_settings(
        Settings,
        kafka_bootstrap_servers=bootstrap,
        consumer_group=name,
        consumes_topic=f"{name}.requested",
        produces_topic=f"{name}.created",
        dead_letter_topic=f"{name}.dead-letter",
        consumer_workers=1,
        consumer_batch_size=5,
        kafka_check_interval_seconds=0.5,
        shutdown_grace_seconds=10,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = (settings.consumes_topic, settings.produces_topic, settings.dead_letter_topic)
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        yield settings
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, count: int) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        names = [f"n{i}" for i in range(count)]
        for name in names:
            body = Requested(name=name).model_dump_json().encode()
            await producer.send(topic, body, key=name.encode())
        await producer.flush()
        return names
    finally:
        await producer.stop()


async def test_batches_are_committed_and_lag_is_read_from_aiokafkas_consumer(
    bootstrap: str, settings: Settings
) -> None:
    handled: list[str] = []

    def handle(event: Requested) -> Created:
        handled.append(event.name)
        return Created(name=event.name, source_event_id=event.event_id)

    service = Service(settings)
    service.consume(settings.consumes_topic, handle, publish_to=settings.produces_topic)
    names = await produce(bootstrap, settings.consumes_topic, 40)

    def lags() -> dict[str, float]:
        [family] = service.metrics.lag.collect()
        return {sample.labels["partition"]: sample.value for sample in family.samples}

    async with service.app.router.lifespan_context(service.app):
        await until(lambda: service.readiness.ready)
        await until(lambda: len(handled) == len(names))
        # The last batch is handled before it is committed and its lag reported.
        await until(lambda: lags() and not any(lags().values()))
        reported = lags()

    assert sorted(handled) == sorted(names)
    assert set(reported) <= {"0", "1"}
    assert await committed(settings, PARTITIONS) == len(names)


async def test_a_drain_stops_fetching_and_commits_exactly_what_was_handled(
    bootstrap: str, settings: Settings
) -> None:
    """SIGTERM mid-stream: the batch in flight finishes and is committed, no new one starts,
    and the next instance starts right after it: nothing lost, nothing twice."""
    handled: list[tuple[float, str]] = []

    async def slow(event: Requested) -> Created:
        await asyncio.sleep(0.05)
        handled.append((time.monotonic(), event.name))
        return Created(name=event.name, source_event_id=event.event_id)

    names = await produce(bootstrap, settings.consumes_topic, 100)
    first = Service(settings)
    first.consume(settings.consumes_topic, slow, publish_to=settings.produces_topic)
    async with first.app.router.lifespan_context(first.app):
        await until(lambda: len(handled) >= 12)
        drain_started = time.monotonic()
        first.begin_drain()
    after_drain = [name for at, name in handled if at > drain_started]
    handled_by_first = len(handled)

    assert len(after_drain) < settings.consumer_batch_size  # only the batch in flight
    assert handled_by_first < len(names)
    assert await committed(settings, PARTITIONS) == handled_by_first

    second = Service(settings)
    second.consume(settings.consumes_topic, slow, publish_to=settings.produces_topic)
    async with second.app.router.lifespan_context(second.app):
        await until(lambda: len(handled) == len(names), seconds=60)

    assert sorted(name for _, name in handled) == sorted(names)  # none lost, none twice


async def test_readiness_follows_kafka(settings: Settings) -> None:
    """Not ready while Kafka cannot be reached; the HTTP API says why."""
    unreachable = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9"})
    service = Service(unreachable)

    async with service.app.router.lifespan_context(service.app):
        await until(lambda: "Kafka unreachable" in service.readiness.reason)
        assert service.metrics.kafka_connected.collect()[0].samples[0].value == 0  # type: ignore[index]
