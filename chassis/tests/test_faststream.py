"""What the chassis relies on beyond FastStream's documented API fails loudly when gone."""

import inspect

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError
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


class _Consumer:
    """Stands in for aiokafka's consumer: `getmany` finds nothing, then one record, then
    the consumer is stopped (which ends FastStream's consume loop)."""

    def __init__(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.fetches: list[dict[TopicPartition, list[object]]] = [
            {},
            {TopicPartition(record.topic, record.partition): [record]},
        ]
        self.polls: list[tuple[int, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.assigned = {TopicPartition(record.topic, record.partition)}

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[object, list[object]]:
        self.polls.append((timeout_ms, max_records))
        if not self.fetches:
            raise ConsumerStoppedError
        return dict(self.fetches.pop(0))

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


async def test_faststreams_consume_loop_fetches_through_the_chassis_without_idle_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastStream's own consume loop, on its real subscriber: an empty poll is not followed
    by a sleep, and the batch it hands on was fetched through the chassis' partitions,
    which seek it back before the next fetch because it never finished (the handler
    is left out here, as when FastStream's parser fails)."""

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)  # what FastStream sleeps with
    settings = test_settings(example.Settings, consumer_workers=1)
    service = example.create_service(settings)
    [subscriber] = service.subscribers
    assert isinstance(subscriber, usecase.BatchSubscriber)  # FastStream's real object
    record = ConsumerRecord(
        topic=settings.consumes_topic,
        partition=2,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=(),
    )
    handed_on: list[object] = []

    async def consume_one(batch: object) -> None:
        handed_on.append(batch)

    monkeypatch.setattr(subscriber, "consume_one", consume_one)
    monkeypatch.setattr(subscriber, "running", True, raising=False)
    kafka = _Consumer(record)

    await subscriber._run_consume_loop(kafka)

    assert handed_on == [(record,)]
    assert kafka.polls == [(50, settings.consumer_batch_size)] * 3
    assert kafka.seeks == [(TopicPartition(settings.consumes_topic, 2), 7)]


def test_a_subscriber_that_is_not_a_batch_subscriber_stops_the_service() -> None:
    with pytest.raises(_faststream.FastStreamChangedError, match="BatchSubscriber"):
        _faststream.fetch_through(object(), None)  # type: ignore[arg-type]


def test_a_batch_subscriber_without_get_msg_stops_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(usecase.BatchSubscriber, "get_msg")

    with pytest.raises(_faststream.FastStreamChangedError, match="get_msg"):
        example.create_service(test_settings(example.Settings))
