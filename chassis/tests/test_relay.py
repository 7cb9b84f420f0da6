"""The outbox relay against a real PostgreSQL and Kafka (markers `postgres` and `kafka`):
committed rows are published once, in write order per key, rolled-back ones never; two
relays never publish the same bucket at once; a row Kafka refuses is dead-lettered
without holding back other keys."""

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from event_chassis import Service
from event_chassis.database import Database
from event_chassis.health import Readiness, Writes
from event_chassis.outbox import Outbox
from event_chassis.relay import OutboxRelay

from .example import Requested, Settings
from .real_kafka import Record, fresh_settings, produce, read, request, until

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]
TRACER = TracerProvider().get_tracer(__name__)
UNPUBLISHED = text("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")


class Numbered(BaseModel):
    key: str
    number: int
    padding: str = ""


@pytest.fixture
async def settings(database_url: str) -> Settings:
    return await fresh_settings(
        database_url=database_url,
        outbox_poll_seconds=0.2,
        outbox_batch_size=50,
        outbox_max_attempts=2,
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings, Readiness())
    await database.upgrade()
    yield database
    await database.close()


def relay(settings: Settings) -> OutboxRelay:
    return OutboxRelay(settings, CollectorRegistry(), TRACER, Writes())


def sample(relay: OutboxRelay, name: str) -> float:
    return relay.metrics.registry.get_sample_value(name) or 0.0


async def write(
    database: Database, topic: str, count: int, keys: int, *, fail_every: int = 0
) -> list[str]:
    """`count` events in their own transactions; every `fail_every`th is rolled back."""
    outbox, kept = Outbox(buckets=16), []
    for number in range(count):
        key = f"key-{number % keys}"
        try:
            async with database.transaction() as session:
                await outbox.add(session, topic, Numbered(key=key, number=number), key=key)
                if fail_every and number % fail_every == 0:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            continue
        kept.append(f"{key}/{number}")
    return kept


def published(records: list[Any]) -> tuple[list[str], dict[str, list[int]]]:
    """Each record's key/number, and the numbers per key in the order they arrived."""
    names, per_key = [], defaultdict(list)
    for record in records:
        event = json.loads(record.value)
        names.append(f"{event['key']}/{event['number']}")
        per_key[event["key"]].append(event["number"])
    return names, per_key


async def drained(database: Database, seconds: float) -> None:
    """Until PostgreSQL holds no unpublished row. Not the `outbox_backlog` gauge: it is
    measured once a second, so a 0 read just after the last write can predate it."""
    deadline = time.monotonic() + seconds
    while True:
        async with database.transaction() as session:
            waiting = await session.scalar(UNPUBLISHED)
        if not waiting:
            return
        assert time.monotonic() < deadline, f"{waiting} rows still unpublished"
        await asyncio.sleep(0.1)


async def test_committed_rows_are_published_once_in_order_per_key(
    settings: Settings, database: Database
) -> None:
    topic = settings.produces_topic
    with TRACER.start_as_current_span("writer") as span:
        kept = await write(database, topic, 300, keys=10, fail_every=7)
        trace_id = format(span.get_span_context().trace_id, "032x")
    publisher = relay(settings)
    publisher.start()
    try:
        await until(lambda: sample(publisher, "outbox_published_total") >= len(kept), 60)
        await until(lambda: sample(publisher, "outbox_backlog") == 0, 10)  # measured each second
    finally:
        await publisher.stop()
    records = await read(topic, 2)
    names, per_key = published(records)

    assert sorted(names) == sorted(kept)  # each committed row once, no rolled-back one
    assert all(numbers == sorted(numbers) for numbers in per_key.values())
    headers = dict(records[0].headers)
    assert uuid.UUID(headers["message-id"].decode())
    assert headers["traceparent"].decode().split("-")[1] == trace_id


async def test_a_stopped_relay_publishes_what_was_committed_before_the_stop(
    settings: Settings, database: Database
) -> None:
    """The service stops its consumers, then the relay: their last rows must leave too (a
    container's `docker stop` once left 2 of 152 handled requests without their result)."""
    topic = settings.produces_topic
    kept = await write(database, topic, 50, keys=5)
    publisher = relay(settings)
    publisher.start()
    await publisher.stop()  # before its first round began
    names, _ = published(await read(topic, 2))

    assert sorted(names) == sorted(kept)


async def test_the_relay_outlives_an_error_it_did_not_expect(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that fails in a way nobody listed (an asyncpg protocol error, say) is
    logged and tried again: the relay's task must not end, or the outbox stops for good."""
    kept = await write(database, settings.produces_topic, 20, keys=4)
    publisher, failures = relay(settings), list[int]()
    whole_round = OutboxRelay.round

    async def failing_once(self: OutboxRelay) -> int:
        if not failures:
            failures.append(1)
            raise RuntimeError("unexpected")
        return await whole_round(self)

    monkeypatch.setattr(OutboxRelay, "round", failing_once)
    publisher.start()
    try:
        await until(lambda: sample(publisher, "outbox_published_total") >= len(kept), 30)
    finally:
        await publisher.stop()
    assert failures == [1]


async def test_two_relays_never_share_a_bucket_and_one_takes_over_from_the_other(
    settings: Settings, database: Database
) -> None:
    """A relay dies (its connection and advisory locks gone); the other takes its buckets.
    The order per key holds; the rows the dead one had sent but not marked come twice."""
    topic = settings.produces_topic
    first, second = relay(settings), relay(settings)
    first.start()
    await until(lambda: len(first.owned) == settings.outbox_buckets)
    second.start()
    writing = asyncio.create_task(write(database, topic, 600, keys=20))
    await until(lambda: sample(first, "outbox_published_total") >= 100, 60)
    # The second relay is connected, so its rounds try to claim buckets too.
    await until(lambda: second.connection is not None, 30)
    await asyncio.sleep(2 * settings.outbox_poll_seconds)
    shared = first.owned & second.owned
    await asyncio.sleep(0.05)
    first._task.cancel()  # type: ignore[union-attr]  # dies mid-round, as on SIGKILL
    assert first.connection is not None
    first.connection.terminate()
    kept = await writing
    try:
        await until(lambda: len(second.owned) == settings.outbox_buckets, 30)
        await drained(database, 60)
    finally:
        await second.stop()
        await first.stop()
    names, per_key = published(await read(topic, 2))

    assert shared == set()
    assert set(names) == set(kept)  # none lost
    duplicates = len(names) - len(set(names))
    print(f"{len(kept)} written, {len(names)} published, {duplicates} duplicates at the take-over")
    for numbers in per_key.values():
        firsts = list(dict.fromkeys(numbers))  # a re-sent row repeats what came before it
        assert firsts == sorted(firsts)


async def test_a_row_kafka_refuses_is_dead_lettered_and_holds_back_only_its_key(
    settings: Settings, database: Database
) -> None:
    topic = settings.produces_topic
    settings = settings.model_copy(update={"kafka_producer_max_request_bytes": 4096})
    outbox = Outbox(buckets=16)
    async with database.transaction() as session:
        await outbox.add(
            session, topic, Numbered(key="big", number=0, padding="x" * 8000), key="big"
        )
        await outbox.add(session, topic, Numbered(key="big", number=1), key="big")
        for number in range(2, 50):
            await outbox.add(session, topic, Numbered(key="small", number=number), key="small")
    publisher = relay(settings)
    publisher.start()
    try:
        await until(lambda: sample(publisher, "outbox_dead_lettered_total") == 1, 60)
        await until(lambda: sample(publisher, "outbox_published_total") == 49, 30)
    finally:
        await publisher.stop()
    _, per_key = published(await read(topic, 2))
    [dead] = await read(settings.dead_letter_topic, 2)
    headers = dict(dead.headers)

    assert per_key["small"] == list(range(2, 50))
    assert per_key["big"] == [1]  # after its refused predecessor was dead-lettered
    assert headers["x-dead-letter-error"] == b"OutboxPublishError"
    assert b"MessageSizeTooLarge" in headers["x-dead-letter-reason"]
    assert headers["x-original-topic"] == topic.encode()


class Tally(BaseModel):
    name: str
    count: int


async def test_a_service_with_a_database_changes_state_once_per_message(
    settings: Settings,
) -> None:
    """Kafka -> database -> Kafka through a real service: a handler that takes a session
    runs once per message (the same message delivered twice changes nothing) and its
    result leaves through the outbox, with the state change."""
    service = Service(settings)
    database = service.use_database()

    async def count(event: Requested, session: AsyncSession) -> Tally:
        await session.execute(
            text(
                "INSERT INTO tallies (name, count) VALUES (:name, 1) "
                "ON CONFLICT (name) DO UPDATE SET count = tallies.count + 1"
            ),
            {"name": event.name},
        )
        total = await session.scalar(
            text("SELECT count FROM tallies WHERE name = :name"), {"name": event.name}
        )
        return Tally(name=event.name, count=int(total or 0))

    service.consume(settings.consumes_topic, count, publish_to=settings.produces_topic)
    admin = await asyncpg.connect(settings.database_dsn())
    await admin.execute("CREATE TABLE tallies (name text PRIMARY KEY, count int NOT NULL)")
    twice = [("m-1", b"message-id", b"m-1"), ("m-2", b"message-id", b"m-2")]
    records: list[Record] = [
        (name, request(name.split("-")[0]), [(header.decode(), value)])
        for name, header, value in twice
        for _ in range(2)  # each message delivered twice, as after a producer's retry
    ]
    records += [(f"x{i}", request("x"), []) for i in range(3)]
    await produce(settings.consumes_topic, records)

    async with service.app.router.lifespan_context(service.app):
        await until(lambda: service.readiness.ready, 60)
        await until(
            lambda: (
                service.relay is not None and sample(service.relay, "outbox_published_total") >= 5
            ),
            60,
        )
    tallies = dict(await admin.fetch("SELECT name, count FROM tallies"))
    await admin.close()
    results = [json.loads(record.value) for record in await read(settings.produces_topic, 2)]

    assert database is service.database
    assert tallies == {"m": 2, "x": 3}  # m-1 and m-2 once each; the three x's each count
    assert sorted(result["count"] for result in results if result["name"] == "x") == [1, 2, 3]
    assert len(results) == 5
