"""Poison messages and failing handlers end in the dead-letter topic; the consumer goes on."""

from types import SimpleNamespace

import pytest
from faststream import ContextRepo
from faststream.kafka import KafkaBroker, KafkaRouter

from value_architect import handlers
from value_architect.config import Settings
from value_architect.dead_letter import (
    UNDECODABLE_HEADERS,
    BinaryHeaderGuard,
    DeadLetterPolicy,
)
from value_architect.events import ValueModelRequested

from .conftest import Recorded

GOOD = {"company_name": "Acme", "industry": "Retail"}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"this is not json", "ValidationError"),
        (b"", "ValidationError"),
        (b"\x00\xff\xfe binary", "ValidationError"),
        (b'{"company_name": 42, "industry": "Retail"}', "ValidationError"),
        (b'{"company_name": "Acme"}', "ValidationError"),
        (b'{"schema_version": 2, "company_name": "Acme", "industry": "Retail"}', "ValidationError"),
        (b"[1, 2, 3]", "ValidationError"),
    ],
)
async def test_poison_message_is_dead_lettered_and_consumer_goes_on(
    broker: KafkaBroker, settings: Settings, recorded: Recorded, payload: bytes, error: str
) -> None:
    await broker.publish(payload, settings.consumes_topic)
    await broker.publish(GOOD, settings.consumes_topic)

    [dead] = recorded[settings.dead_letter_topic]
    assert dead.body == payload
    assert dead.headers["x-dead-letter-error"] == error
    assert dead.headers["x-dead-letter-reason"]
    assert dead.headers["x-original-topic"] == settings.consumes_topic
    assert dead.headers["x-original-partition"].isdigit()
    assert dead.headers["x-original-offset"].isdigit()
    assert dead.headers["x-original-consumer-group"] == settings.consumer_group
    assert len(recorded[settings.produces_topic]) == 1


async def test_oversized_message_is_dead_lettered_unread(
    broker: KafkaBroker, settings: Settings, recorded: Recorded
) -> None:
    payload = b'{"company_name": "' + b"x" * settings.max_event_bytes + b'"}'

    await broker.publish(payload, settings.consumes_topic)

    [dead] = recorded[settings.dead_letter_topic]
    assert dead.headers["x-dead-letter-error"] == "PoisonMessageError"
    assert "exceeds" in dead.headers["x-dead-letter-reason"]


async def test_transient_error_is_retried_then_succeeds(
    broker: KafkaBroker, settings: Settings, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = iter([TimeoutError("slow dependency"), TimeoutError("slow dependency")])
    real_handle = handlers.handle

    def flaky(event: ValueModelRequested) -> object:
        if error := next(failures, None):
            raise error
        return real_handle(event)

    monkeypatch.setattr(handlers, "handle", flaky)

    await broker.publish(GOOD, settings.consumes_topic)

    assert len(recorded[settings.produces_topic]) == 1
    assert not recorded[settings.dead_letter_topic]


async def test_persistent_error_is_dead_lettered_after_bounded_retries(
    broker: KafkaBroker, settings: Settings, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    def broken(event: ValueModelRequested) -> object:
        nonlocal calls
        calls += 1
        raise RuntimeError("database is on fire")

    monkeypatch.setattr(handlers, "handle", broken)

    await broker.publish(GOOD, settings.consumes_topic)

    assert calls == settings.handler_max_retries + 1
    [dead] = recorded[settings.dead_letter_topic]
    assert dead.headers["x-dead-letter-error"] == "RuntimeError"
    assert dead.headers["x-dead-letter-attempts"] == str(calls)
    assert not recorded[settings.produces_topic]


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = DeadLetterPolicy(
        KafkaRouter().publisher("dead-letters"),
        consumer_group="group",
        max_retries=6,
        backoff_seconds=0.2,
        max_event_bytes=1024,
        max_backoff_seconds=1.0,
    )

    delays = [policy.backoff(attempt) for attempt in range(1, 7)]

    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


async def test_binary_header_is_escaped_before_parsing_and_dead_lettered(
    broker: KafkaBroker, settings: Settings, recorded: Recorded
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

    await broker.publish(GOOD, settings.consumes_topic, headers={UNDECODABLE_HEADERS: "x-raw"})

    [dead] = recorded[settings.dead_letter_topic]
    assert dead.headers["x-dead-letter-error"] == "PoisonMessageError"
    assert dead.headers["x-dead-letter-reason"] == "headers not UTF-8: x-raw"
    assert not recorded[settings.produces_topic]
