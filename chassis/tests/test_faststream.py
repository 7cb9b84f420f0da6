"""What the chassis relies on beyond FastStream's documented API fails loudly when gone."""

import inspect

import anyio
import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka.message import FAKE_CONSUMER, KafkaMessage
from faststream.kafka.subscriber import usecase

from event_chassis import _faststream
from event_chassis.testing import test_settings

from . import example


def test_the_faststream_in_use_offers_what_the_chassis_relies_on() -> None:
    _faststream.verify()


def test_a_renamed_consumer_attribute_stops_the_service_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def renamed(
        self: KafkaMessage, *args: object, kafka_consumer: object, **kwargs: object
    ) -> None:
        """KafkaMessage.__init__ as a FastStream release that renamed `consumer` would have it."""

    monkeypatch.setattr(KafkaMessage, "__init__", renamed)

    with pytest.raises(_faststream.FastStreamChangedError, match="consumer"):
        example.create_service(test_settings(example.Settings))


def test_the_consumer_behind_a_message_is_aiokafkas() -> None:
    """The in-memory test broker's fake consumer is not taken for aiokafka's."""
    message = KafkaMessage(body=b"", raw_message=(), consumer=FAKE_CONSUMER)
    real = AIOKafkaConsumer.__new__(AIOKafkaConsumer)
    message_from_kafka = KafkaMessage(body=b"", raw_message=(), consumer=real)

    assert _faststream.aiokafka_consumer(message) is None
    assert _faststream.aiokafka_consumer(message_from_kafka) is real
    assert "consumer" in inspect.signature(KafkaMessage.__init__).parameters


class _IdleConsumer:
    """Stands in for aiokafka's consumer on an idle topic: `getmany` finds nothing."""

    def __init__(self) -> None:
        self.polls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[object, list[object]]:
        self.polls.append((timeout_ms, max_records))
        return {}


async def test_an_empty_poll_is_not_followed_by_faststreams_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record arriving after an empty poll is fetched at once, not after a sleep."""

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)  # what FastStream sleeps with
    settings = test_settings(example.Settings)
    service = example.create_service(settings)
    consumer = _IdleConsumer()

    for subscriber in service.subscribers:
        assert isinstance(subscriber, usecase.BatchSubscriber)  # FastStream's real object
        assert await subscriber.get_msg(consumer) == ()

    assert consumer.polls == [(50, settings.consumer_batch_size)] * settings.consumer_workers


def test_a_subscriber_that_is_not_a_batch_subscriber_stops_the_service() -> None:
    with pytest.raises(_faststream.FastStreamChangedError, match="BatchSubscriber"):
        _faststream.fetch_without_idle_sleep(object())


def test_a_batch_subscriber_without_get_msg_stops_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(usecase.BatchSubscriber, "get_msg")

    with pytest.raises(_faststream.FastStreamChangedError, match="get_msg"):
        example.create_service(test_settings(example.Settings))
