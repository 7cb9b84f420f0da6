"""The one place where the chassis relies on FastStream beyond its documented API.

Everything else uses FastStream's public API (subscribers, publishers,
`subscriber.stop()` with the broker's `graceful_timeout`,
`BaseMiddleware.on_receive`). Here: the consumer behind a message, the broker's
producer, replaced by one that closes aiokafka's producer when Kafka refuses it,
and a batch subscriber's fetch, replaced by one that follows each batch until it
is finished and does not sleep after an empty poll. What is here is checked (by
`verify()` when a service is built, and when the producer and the fetch are
replaced), so a FastStream release
that changes it fails loudly at start-up (and in the chassis' tests against the
real objects) instead of silently switching a feature off.
"""

import inspect
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from faststream.kafka.subscriber.usecase import BatchSubscriber

from .partitions import Partitions


class FastStreamChangedError(RuntimeError):
    """FastStream no longer offers what the chassis relies on: pin an older one."""


def aiokafka_consumer(message: KafkaMessage) -> AIOKafkaConsumer | None:
    """The aiokafka consumer a batch came from (its high-water marks give the lag).

    FastStream's KafkaMessage keeps the consumer it commits through as the
    attribute `consumer`; the in-memory test broker puts a fake there.
    """
    consumer = message.consumer
    return consumer if isinstance(consumer, AIOKafkaConsumer) else None


class _ProducerClosedWhenStartFails(AioKafkaFastProducerImpl):
    """FastStream's producer, which also closes aiokafka's producer when Kafka refuses it.

    FastStream creates aiokafka's producer in `broker.start()` and drops it unclosed
    when its `start()` fails, so every retry while Kafka is down (and the shut-down)
    logged `Unclosed AIOKafkaProducer` at ERROR.
    """

    __slots__ = ()

    async def connect(self, producer: AIOKafkaProducer, *args: Any, **kwargs: Any) -> None:
        try:
            await super().connect(producer, *args, **kwargs)
        except BaseException:
            await producer.stop()
            raise


def close_producer_when_start_fails(broker: KafkaBroker) -> None:
    """Give `broker` (built without a parser or decoder of its own) the producer above."""
    config = broker.config.broker_config
    if not isinstance(config.producer, AioKafkaFastProducerImpl):
        raise FastStreamChangedError(
            "the KafkaBroker's producer is no longer FastStream's AioKafkaFastProducerImpl: "
            "pin faststream<0.8 or update the chassis"
        )
    config.producer = _ProducerClosedWhenStartFails(parser=None, decoder=None)


def fetch_through(subscriber: object, partitions: Partitions) -> None:
    """Make a batch subscriber fetch through `partitions`, without FastStream's idle sleep.

    FastStream's consume loop calls the subscriber's `get_msg` for every batch, then
    parses it and calls the handler, and only logs an error raised on the way. Fetching
    through `partitions` lets the chassis see every batch: one that never finished is
    sought back before the next fetch (see `partitions`).

    FastStream's `BatchSubscriber.get_msg` calls aiokafka's `getmany(timeout_ms)`,
    which already waits up to that long for records and returns as soon as some
    arrive, and then, when it got none, sleeps as long again. A record that comes
    during that sleep waits for it: up to `batch_timeout_ms` (50 ms) a hop at low
    load, the largest part of a request's latency through two services. Without the
    sleep an idle consumer still wakes only once per `batch_timeout_ms`.
    """
    if not isinstance(subscriber, BatchSubscriber) or "get_msg" not in vars(BatchSubscriber):
        raise FastStreamChangedError(
            f"{type(subscriber).__name__} is not FastStream's BatchSubscriber with its own "
            "get_msg: pin faststream<0.8 or update the chassis"
        )
    timeout_ms, max_records = subscriber.batch_timeout_ms, subscriber.max_records

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        await partitions.before_fetch(consumer)
        fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        partitions.fetched(fetched)
        return tuple(chain.from_iterable(fetched.values()))

    subscriber.get_msg = get_msg  # type: ignore[method-assign]


def verify() -> None:
    """Fail with a clear error if the attributes used above are gone."""
    parameters = inspect.signature(KafkaMessage.__init__).parameters
    if "consumer" not in parameters:
        raise FastStreamChangedError(
            "faststream.kafka.message.KafkaMessage no longer takes `consumer`: "
            "the chassis cannot read consumer lag; pin faststream<0.8 or update the chassis"
        )
    if not hasattr(AIOKafkaConsumer, "highwater"):
        raise FastStreamChangedError("aiokafka's consumer has no `highwater`: update the chassis")
