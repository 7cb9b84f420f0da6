"""Kafka subscribers and publishers: the service's event-driven work.

At-least-once delivery: `AckPolicy.NACK_ON_ERROR` commits the offset only
after the handler returns (FastStream's default commits on receipt, before
the work is done). An error that escapes the dead-letter middleware seeks
back, so the message is redelivered instead of lost.
"""

from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.publisher import DefaultPublisher

from . import events
from .config import Settings
from .dead_letter import DeadLetterPolicy


def handle(event: events.ValueModelRequested) -> events.ValueModelCreated:
    """The work itself, free of Kafka so it is easy to test. Replace with yours."""
    return events.ValueModelCreated(
        company_name=event.company_name,
        industry=event.industry,
        source_event_id=event.event_id,
    )


def create_router(settings: Settings) -> KafkaRouter:
    router = KafkaRouter()
    produced: DefaultPublisher = router.publisher(
        settings.produces_topic,
        schema=events.ValueModelCreated,
        description="Emitted once for every request handled.",
    )
    dead_letters: DefaultPublisher = router.publisher(
        settings.dead_letter_topic,
        schema=bytes,
        description="Messages that could not be processed, with x-dead-letter-* headers.",
    )
    router.add_middleware(
        DeadLetterPolicy(
            dead_letters,
            consumer_group=settings.consumer_group,
            max_retries=settings.handler_max_retries,
            backoff_seconds=settings.handler_retry_backoff_seconds,
            max_event_bytes=settings.max_event_bytes,
        )
    )

    @router.subscriber(
        settings.consumes_topic,
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
    async def on_value_model_requested(
        event: events.ValueModelRequested,
    ) -> None:
        """Handle a request and emit the result, keyed like the request."""
        result = handle(event)
        await produced.publish(result, key=event.company_name.encode())

    return router
