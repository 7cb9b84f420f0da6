"""Batch consumers: results keyed like their request, retries, dead letters, declarations."""

import json
from types import SimpleNamespace
from typing import Any

import pytest
from faststream import ContextRepo
from pydantic import ValidationError

from event_chassis import DependencyUnavailableError, PoisonMessageError, RetryPolicy, Service
from event_chassis.consumer import EventTypes, Outcome
from event_chassis.dead_letter import UNDECODABLE_HEADERS, BinaryHeaderGuard
from event_chassis.testing import TestService

from . import example
from .example import Created, Requested, Settings

GOOD = Requested(name="acme")


async def test_each_request_gets_one_result_keyed_like_it(
    service: TestService, settings: Settings
) -> None:
    await service.send(settings.consumes_topic, GOOD, key=b"acme-key")

    [result] = service.published(settings.produces_topic)
    assert json.loads(result.body) == {"name": "acme", "source_event_id": str(GOOD.event_id)}
    assert result.key == b"acme-key"
    assert result.headers["content-type"] == "application/json"
    assert not service.published(settings.dead_letter_topic)


async def test_a_handler_that_returns_none_publishes_nothing(
    service: TestService, settings: Settings
) -> None:
    await service.send(settings.consumes_topic, Requested(name="skip"))

    assert example.behaviour.calls == 1
    assert not service.published(settings.produces_topic)
    assert not service.published(settings.dead_letter_topic)


@pytest.mark.parametrize(
    "payload",
    [
        b"this is not json",
        b"",
        b"\x00\xff\xfe binary",
        b'{"name": 42}',
        b'{"name": ""}',
        b'{"name": "acme", "unexpected": 1}',
        b"[1, 2, 3]",
    ],
)
async def test_an_invalid_event_is_dead_lettered_at_once_and_the_consumer_goes_on(
    service: TestService, settings: Settings, payload: bytes
) -> None:
    await service.send(settings.consumes_topic, payload, key=b"bad")
    await service.send(settings.consumes_topic, GOOD)

    [dead] = service.published(settings.dead_letter_topic)
    assert dead.body == payload
    assert dead.key == b"bad"
    assert dead.headers["x-dead-letter-error"] == "ValidationError"
    assert dead.headers["x-dead-letter-reason"]
    assert dead.headers["x-dead-letter-attempts"] == "1"
    assert dead.headers["x-original-topic"] == settings.consumes_topic
    assert dead.headers["x-original-partition"].isdigit()
    assert dead.headers["x-original-offset"].isdigit()
    assert dead.headers["x-original-consumer-group"] == settings.consumer_group
    assert example.behaviour.calls == 1  # only the good one reached the handler
    assert len(service.published(settings.produces_topic)) == 1


async def test_an_oversized_event_is_dead_lettered_unread(
    service: TestService, settings: Settings
) -> None:
    payload = b'{"name": "' + b"x" * settings.max_event_bytes + b'"}'

    await service.send(settings.consumes_topic, payload)

    [dead] = service.published(settings.dead_letter_topic)
    assert dead.headers["x-dead-letter-error"] == "PoisonMessageError"
    assert "exceeds" in dead.headers["x-dead-letter-reason"]
    assert example.behaviour.calls == 0


async def test_a_handler_can_refuse_an_event_for_good(
    service: TestService, settings: Settings
) -> None:
    await service.send(settings.consumes_topic, Requested(name="poison"))

    [dead] = service.published(settings.dead_letter_topic)
    assert dead.headers["x-dead-letter-error"] == "PoisonMessageError"
    assert dead.headers["x-dead-letter-reason"] == "poison is never processed"
    assert example.behaviour.calls == 1


async def test_a_transient_error_is_retried_then_succeeds(
    service: TestService, settings: Settings
) -> None:
    example.behaviour.failures = [TimeoutError("slow"), TimeoutError("slow")]

    await service.send(settings.consumes_topic, GOOD)

    assert example.behaviour.calls == 3
    assert len(service.published(settings.produces_topic)) == 1
    assert not service.published(settings.dead_letter_topic)


async def test_a_persistent_error_is_dead_lettered_after_bounded_retries(
    service: TestService, settings: Settings
) -> None:
    example.behaviour.failures = [RuntimeError("database is on fire")] * 10

    await service.send(settings.consumes_topic, GOOD)

    attempts = settings.handler_max_retries + 1
    assert example.behaviour.calls == attempts
    [dead] = service.published(settings.dead_letter_topic)
    assert dead.headers["x-dead-letter-error"] == "RuntimeError"
    assert dead.headers["x-dead-letter-attempts"] == str(attempts)
    assert not service.published(settings.produces_topic)


class NoRetryForLookups(RetryPolicy):
    """A team's own decision: a missing record will not appear by retrying."""

    def delay(self, error: Exception, attempt: int) -> float | None:
        if isinstance(error, LookupError):
            return None
        return super().delay(error, attempt)


async def test_a_service_decides_what_to_retry(settings: Settings) -> None:
    service = Service(settings)
    service.consume(
        settings.consumes_topic,
        example.handle,
        publish_to=settings.produces_topic,
        retry=NoRetryForLookups(max_retries=5, backoff_seconds=0.001),
    )
    example.behaviour.failures = [KeyError("no such customer"), TimeoutError("slow")]

    async with TestService(service) as running:
        await running.send(settings.consumes_topic, GOOD)
        await running.send(settings.consumes_topic, GOOD)

        [dead] = running.published(settings.dead_letter_topic)
        assert dead.headers["x-dead-letter-error"] == "KeyError"
        assert dead.headers["x-dead-letter-attempts"] == "1"
        assert len(running.published(settings.produces_topic)) == 1  # retried after the timeout


@pytest.mark.parametrize(
    "error", [TimeoutError("slow"), ConnectionRefusedError(), DependencyUnavailableError("db")]
)
async def test_a_dependency_that_stays_down_puts_the_record_back_never_dead_letters_it(
    service: TestService, settings: Settings, error: Exception
) -> None:
    """After the retries in place the record is held (its partition paused and read again
    against a real Kafka: test_kafka), not dead-lettered."""
    example.behaviour.failures = [error] * 10
    [consumer] = service.service.batch_consumers[:1]
    outcomes: list[Outcome] = []
    process = consumer.pipeline.process

    async def recorded(*args: Any) -> Outcome:
        outcomes.append(await process(*args))
        return outcomes[-1]

    consumer.pipeline.process = recorded  # type: ignore[method-assign,assignment]

    await service.send(settings.consumes_topic, GOOD)

    assert outcomes == [Outcome.HOLD]
    assert example.behaviour.calls == settings.handler_max_retries + 1
    assert not service.published(settings.dead_letter_topic)
    assert not service.published(settings.produces_topic)


def test_a_team_can_say_an_error_is_permanent_though_it_looks_like_an_outage() -> None:
    policy = RetryPolicy(permanent=(ValidationError, PoisonMessageError, TimeoutError))

    assert not policy.waits_for_dependency(TimeoutError())
    assert policy.waits_for_dependency(ConnectionResetError())
    assert not policy.waits_for_dependency(RuntimeError())


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(max_retries=6, backoff_seconds=0.2, max_backoff_seconds=1.0)

    delays = [policy.delay(TimeoutError(), attempt) for attempt in range(1, 8)]

    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0, None])


async def test_async_handlers_are_awaited(settings: Settings) -> None:
    async def handle(event: Requested) -> Created:
        return Created(name=event.name.upper(), source_event_id=event.event_id)

    service = Service(settings)
    service.consume(settings.consumes_topic, handle, publish_to=settings.produces_topic)
    async with TestService(service) as running:
        await running.send(settings.consumes_topic, GOOD)

        [result] = running.published(settings.produces_topic)
        assert json.loads(result.body)["name"] == "ACME"


async def test_a_binary_header_is_escaped_before_parsing_and_dead_lettered(
    service: TestService, settings: Settings
) -> None:
    """FastStream's parser decodes headers as UTF-8; one binary header must not break a batch."""
    bad = SimpleNamespace(headers=[("x-raw", b"\xff\xfe"), ("x-text", b"ok")])
    good = SimpleNamespace(headers=[("x-text", b"ok")])

    await BinaryHeaderGuard((bad, good), context=ContextRepo()).on_receive()

    assert bad.headers == [
        ("x-raw", b"\\xff\\xfe"),
        ("x-text", b"ok"),
        (UNDECODABLE_HEADERS, b"x-raw"),
    ]
    assert good.headers == [("x-text", b"ok")]

    await service.send(settings.consumes_topic, GOOD, headers={UNDECODABLE_HEADERS: "x-raw"})

    [dead] = service.published(settings.dead_letter_topic)
    assert dead.headers["x-dead-letter-error"] == "PoisonMessageError"
    assert dead.headers["x-dead-letter-reason"] == "headers not UTF-8: x-raw"
    assert not service.published(settings.produces_topic)


def test_event_types_come_from_the_handlers_annotations() -> None:
    def returns_nothing(event: Requested) -> None: ...

    assert EventTypes.of(example.handle) == EventTypes(Requested, Created)
    assert EventTypes.of(returns_nothing) == EventTypes(Requested, None)


class NotAModel:
    pass


def untyped(event):  # type: ignore[no-untyped-def]
    return event


def two_events(first: Requested, second: Requested) -> None: ...


def plain_type(event: NotAModel) -> None: ...


def two_results(event: Requested) -> Created | Requested:
    raise NotImplementedError


@pytest.mark.parametrize("handler", [untyped, two_events, plain_type, two_results])
def test_a_handler_without_clear_event_types_is_refused_at_once(handler: object) -> None:
    with pytest.raises(TypeError, match="pydantic model"):
        EventTypes.of(handler)  # type: ignore[arg-type]


def test_results_need_somewhere_to_go_and_only_results_do(settings: Settings) -> None:
    def nothing(event: Requested) -> None: ...

    service = Service(settings)
    with pytest.raises(ValueError, match="publish_to"):
        service.consume(settings.consumes_topic, example.handle)
    with pytest.raises(ValueError, match="publish_to"):
        service.consume(settings.consumes_topic, nothing, publish_to=settings.produces_topic)


def test_every_worker_is_its_own_consumer_in_the_group(
    service: TestService, settings: Settings
) -> None:
    subscribers = service.service.subscribers

    assert len(subscribers) == settings.consumer_workers
    assert all(
        subscriber.topic_names == [settings.consumes_topic] and subscriber.group_id == "example"
        for subscriber in subscribers
    )
