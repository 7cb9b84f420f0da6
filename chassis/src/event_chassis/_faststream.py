"""The one place where the chassis relies on FastStream beyond its documented API.

Everything else uses FastStream's public API (subscribers, publishers,
`message.ack()`/`nack()`, `subscriber.stop()` with the broker's
`graceful_timeout`, `BaseMiddleware.on_receive`). What is here is checked by
`verify()` when a service is built, so a FastStream release that changes it
fails loudly at start-up (and in the chassis' tests against the real objects)
instead of silently switching a feature off.
"""

import inspect

from aiokafka import AIOKafkaConsumer
from faststream.kafka.message import KafkaMessage


class FastStreamChangedError(RuntimeError):
    """FastStream no longer offers what the chassis relies on: pin an older one."""


def aiokafka_consumer(message: KafkaMessage) -> AIOKafkaConsumer | None:
    """The aiokafka consumer a batch came from (its high-water marks give the lag).

    FastStream's KafkaMessage keeps the consumer it commits through as the
    attribute `consumer`; the in-memory test broker puts a fake there.
    """
    consumer = message.consumer
    return consumer if isinstance(consumer, AIOKafkaConsumer) else None


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
