"""What the chassis relies on beyond FastStream's documented API fails loudly when gone."""

import inspect

import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka.message import FAKE_CONSUMER, KafkaMessage

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
