"""No failure path of the batch consumer loses or floods messages (real Kafka, marker `kafka`).

One consumer on three partitions, as the chart runs each replica, so every batch mixes
partitions. Each test counts, by name, what reached the results and dead-letter
topics: nothing may be lost; duplicates beyond the at-least-once replay it causes are
failures, and the replay is printed (`pytest -s`) and bounded.
"""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError

from event_chassis import Service
from event_chassis.dead_letter import BinaryHeaderGuard

from .example import Created, Requested, Settings
from .real_kafka import (
    Headers,
    Record,
    committed,
    delivery,
    fresh_settings,
    plain,
    produce,
    read,
    request,
    until,
)

pytestmark = pytest.mark.kafka


def answer(event: Requested) -> Created:
    return Created(name=event.name, source_event_id=event.event_id)


@asynccontextmanager
async def running(service: Service) -> AsyncIterator[Service]:
    async with service.app.router.lifespan_context(service.app):
        await until(lambda: service.readiness.ready)
        yield service


def started(settings: Settings, handler: Any) -> Service:
    service = Service(settings)
    service.consume(settings.consumes_topic, handler, publish_to=settings.produces_topic)
    return service


def metric(service: Service, name: str) -> float:
    return sum(
        sample.value
        for family in service.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    )


async def test_null_header_values_go_through_with_the_records_around_them() -> None:
    """Kafka allows a header without a value; FastStream's parser called `.decode()` on it
    and dropped the batch, and the next batch's commit moved past it."""
    settings = await fresh_settings(consumer_batch_size=50)
    handled: list[str] = []

    async def handle(event: Requested) -> Created:
        handled.append(event.name)
        return answer(event)

    null: Headers = [("x-null", None)]
    records: list[Record] = [
        (f"n{i}", request(f"n{i}"), null if i % 2 else [("x-plain", b"1")]) for i in range(400)
    ]
    sent = await produce(settings.consumes_topic, records)

    async with running(started(settings, handle)):
        await until(lambda: len(set(handled)) == len(sent))
    found = await delivery(settings, sent)

    found.report("null header values mixed into the stream", null_headers=len(sent) // 2)
    assert found.lost == []
    assert not found.dead_letters
    assert found.duplicates == 0


async def test_a_batch_that_fails_before_the_handler_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A middleware (or FastStream's parser) raising before the handler: FastStream logs
    and drops the batch; the chassis' fetch seeks every partition of it back."""
    settings = await fresh_settings(consumer_batch_size=20)
    handled: list[str] = []
    failures = [0]
    receive = BinaryHeaderGuard.on_receive

    async def fail_three_batches(self: BinaryHeaderGuard) -> None:
        if failures[0] < 3 and len(handled) >= 40 * (failures[0] + 1):
            failures[0] += 1
            raise RuntimeError("a middleware failed")
        await receive(self)

    async def handle(event: Requested) -> Created:
        handled.append(event.name)
        return answer(event)

    monkeypatch.setattr(BinaryHeaderGuard, "on_receive", fail_three_batches)
    sent = await produce(settings.consumes_topic, plain(300))

    service = started(settings, handle)
    async with running(service):
        await until(lambda: len(set(handled)) == len(sent))
    found = await delivery(settings, sent)

    again = metric(service, "messaging_batches_read_again_total")
    found.report("a middleware fails before the handler, 3 batches", read_again=again)
    assert failures == [3]
    assert metric(service, "messaging_batches_read_again_total") == 3
    assert found.lost == []
    assert found.duplicates == 0  # the failed batches never reached the handler


async def test_a_result_publish_failure_mid_batch_reads_the_batch_again() -> None:
    """The results' producer fails once in the middle of a batch: the batch is not
    committed and comes again; results already sent from it come twice (at least once)."""
    settings = await fresh_settings(consumer_batch_size=100, kafka_producer_batch_bytes=2048)
    handled: list[str] = []

    async def handle(event: Requested) -> Created:
        handled.append(event.name)
        return answer(event)

    sent = await produce(settings.consumes_topic, plain(500))
    service = started(settings, handle)
    async with running(service):
        producer = service.results.producer
        assert producer is not None
        send_batch = producer.send_batch
        calls = [0]

        async def fail_the_fifth(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 5:
                raise KafkaConnectionError("injected: the broker went away")
            return await send_batch(*args, **kwargs)

        producer.send_batch = fail_the_fifth
        await until(lambda: len(set(handled)) == len(sent))
    found = await delivery(settings, sent)

    found.report("a result publish fails mid-batch", replay_bound=settings.consumer_batch_size)
    assert calls[0] > 5
    assert found.lost == []
    assert found.duplicates <= settings.consumer_batch_size  # the replayed batch, at most


async def test_a_dead_letter_failure_holds_its_partition_and_dead_letters_once() -> None:
    """The dead-letter topic refuses three times: the record's partition is held and
    tried again, the others go on, and each bad record is dead-lettered exactly once."""
    settings = await fresh_settings(consumer_batch_size=50, partition_hold_seconds=0.2)
    handled: list[str] = []

    async def handle(event: Requested) -> Created:
        handled.append(event.name)
        return answer(event)

    good = plain(300)
    bad: list[Record] = [(f"bad{i}", b"not json", []) for i in range(10)]
    records = [*good[:100], *bad, *good[100:]]
    sent = await produce(settings.consumes_topic, records)
    service = started(settings, handle)
    publish = service.dead_letters.publisher.publish
    refusals = [0]

    async def refuse_three_times(*args: Any, **kwargs: Any) -> Any:
        if refusals[0] < 3:
            refusals[0] += 1
            raise KafkaConnectionError("injected: the dead-letter topic is unavailable")
        return await publish(*args, **kwargs)

    service.dead_letters.publisher.publish = refuse_three_times  # type: ignore[method-assign]
    async with running(service):
        await until(lambda: len(set(handled)) == len(good))
        await until(lambda: metric(service, "messaging_dead_lettered_messages_total") == len(bad))
    found = await delivery(settings, sent)

    failures = metric(service, "messaging_dead_letter_failures_total")
    found.report("the dead-letter topic refuses 3 times", dead_letter_failures=failures)
    assert refusals == [3]
    assert metric(service, "messaging_dead_letter_failures_total") == 3
    assert found.lost == []
    assert sorted(found.dead_letters) == sorted(name for name, _, _ in bad)
    assert set(found.dead_letters.values()) == {1}  # once each
    assert found.duplicates == 0


async def test_a_record_too_large_to_dead_letter_whole_goes_truncated() -> None:
    """Its dead-letter headers push it past the producer's 1 MiB: a truncated copy with
    the reason goes instead, and the partitions around it do not stall."""
    settings = await fresh_settings(consumer_batch_size=50)
    handled: list[str] = []

    async def handle(event: Requested) -> Created:
        handled.append(event.name)
        return answer(event)

    huge: Record = ("huge", b"x" * 1_048_000, [("x-origin", b"a client")])
    good = plain(200)
    sent = await produce(settings.consumes_topic, [*good[:50], huge, *good[50:]])
    service = started(settings, handle)

    async with running(service):
        await until(lambda: len(set(handled)) == len(good))
        await until(lambda: metric(service, "messaging_dead_lettered_messages_total") == 1)
    found = await delivery(settings, sent)
    [dead] = [r for r in await read(settings.dead_letter_topic, 2) if r.key == b"huge"]
    headers = {name: value.decode() for name, value in dead.headers}

    found.report("a record too large to dead-letter whole", truncated_to=len(dead.value))
    assert found.lost == []
    assert found.duplicates == 0
    assert headers["x-dead-letter-truncated"] == str(1_048_000)
    assert headers["x-dead-letter-error"] == "ValidationError"
    assert headers["x-original-topic"] == settings.consumes_topic
    assert len(dead.value) < 1_048_000
    assert metric(service, "messaging_dead_letters_truncated_total") == 1


async def test_a_dependency_outage_under_load_holds_partitions_and_dead_letters_nothing() -> None:
    """A 60 s outage of what the handler calls, with records arriving all along: the
    partitions are held and tried again, nothing is dead-lettered, and every record
    gets its result once the dependency is back."""
    settings = await fresh_settings(consumer_batch_size=200, partition_max_hold_seconds=5)
    handled: list[str] = []
    down = threading.Event()
    down.set()

    async def handle(event: Requested) -> Created:
        if down.is_set():
            raise ConnectionRefusedError("the pricing service is down")
        handled.append(event.name)
        return answer(event)

    service = started(settings, handle)
    async with running(service):
        outage = time.monotonic()
        sent = await produce(
            settings.consumes_topic,
            plain(1200),
            per_second=20,  # 60 s of load
        )
        held_during = metric(service, "messaging_held_partitions")
        lasted = time.monotonic() - outage
        down.clear()
        back = time.monotonic()
        await until(lambda: len(set(handled)) == len(sent))
        caught_up = time.monotonic() - back
    found = await delivery(settings, sent)

    found.report(
        "a 60 s dependency outage under load",
        outage_seconds=round(lasted, 1),
        partitions_held=held_during,
        caught_up_seconds=round(caught_up, 1),
    )
    assert held_during >= 1
    assert found.lost == []
    assert not found.dead_letters
    assert metric(service, "messaging_dead_lettered_messages_total") == 0
    assert found.duplicates == 0


async def test_a_batch_cut_by_its_time_commits_only_what_it_finished() -> None:
    """A batch gets half the shut-down grace (1 s here): the records it did not reach are
    read again, not committed. The instance then stops; the next one finishes the rest."""
    settings = await fresh_settings(consumer_batch_size=100, shutdown_grace_seconds=2)
    handled: list[str] = []

    def handle(event: Requested) -> Created:
        time.sleep(0.1)  # 40 records: 4 s, past the batch's 1 s
        handled.append(event.name)
        return answer(event)

    sent = await produce(settings.consumes_topic, plain(40))
    first = started(settings, handle)
    async with running(first):
        await until(lambda: len(handled) >= 3)
        first.begin_drain()  # the batch in flight ends at its time; no other starts
    by_first = len(handled)
    committed_by_first = await committed(settings)
    second = started(settings, handle)
    async with running(second):
        await until(lambda: len(set(handled)) == len(sent))
    found = await delivery(settings, sent)

    found.report(
        "a batch cut by its time, then a stop",
        handled_by_first=by_first,
        committed_by_first=committed_by_first,
    )
    assert by_first < len(sent)
    assert committed_by_first == by_first
    assert found.lost == []
    assert found.duplicates == 0


async def test_a_blocking_handler_stops_neither_heartbeats_nor_the_health_endpoint() -> None:
    """A plain `def` handler that blocks 200 ms a record (sync I/O, say), 60 records: 12 s
    of blocking, past the 6 s session timeout. It runs on a worker thread: the health
    endpoint answers while it blocks and the consumer keeps its partitions.

    While the test asks the health endpoint, `hold` keeps the record in progress blocked
    (at most 5 s) until the answer is in: a loaded machine could otherwise finish 200 ms
    before the request is served (a cold make test did once). A handler on the event loop
    still fails: no answer can come before it returns."""
    settings = await fresh_settings(consumer_batch_size=100, kafka_consumer_session_timeout_ms=6000)
    calls = {"started": 0, "finished": 0}
    handled: list[str] = []
    hold = threading.Event()

    def handle(event: Requested) -> Created:
        calls["started"] += 1
        time.sleep(0.2)
        deadline = time.monotonic() + 5
        while hold.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        handled.append(event.name)
        calls["finished"] += 1
        return answer(event)

    def started_after(count: int) -> Callable[[], bool]:
        return lambda: calls["started"] > count

    sent = await produce(settings.consumes_topic, plain(60))
    service = started(settings, handle)
    revoked: list[object] = []
    [subscriber] = service.subscribers
    listener = subscriber._listener
    on_revoked = listener.on_partitions_revoked

    async def count_revocations(partitions: Any) -> None:
        revoked.extend(partitions)
        await on_revoked(partitions)

    listener.on_partitions_revoked = count_revocations
    transport = httpx.ASGITransport(app=service.app)
    async with (
        running(service),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        answered_during: list[bool] = []
        for _ in range(5):
            hold.set()
            await until(started_after(calls["started"]))  # a record that will be held
            in_progress = calls["started"]
            response = await http.get("/health/live")
            assert response.status_code == 200
            answered_during.append(calls["finished"] < in_progress)
            hold.clear()
            await asyncio.sleep(0.5)
        await until(lambda: len(set(handled)) == len(sent))
        revoked_while_running = list(revoked)
    found = await delivery(settings, sent)

    found.report(
        "a handler blocking 200 ms a record",
        health_answered_while_blocked=f"{sum(answered_during)}/{len(answered_during)}",
        revocations=len(revoked_while_running),
    )
    assert all(answered_during)
    assert revoked_while_running == []
    assert found.lost == []
    assert found.duplicates == 0
