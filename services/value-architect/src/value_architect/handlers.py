"""Kafka subscribers and publishers: the service's event-driven work.

At-least-once delivery: an offset is committed only once the message has
been handled and its result acknowledged by Kafka (FastStream's default
commits on receipt, before the work is done). `commits.CommitPolicy` does
this in batches, off the per-message path: the handler publishes without
waiting for the acknowledgement, and offsets are committed every
`COMMIT_MAX_PENDING` messages or `COMMIT_INTERVAL_SECONDS`, as soon as the
stream pauses, and at shut-down.
An error that escapes the dead-letter middleware seeks back, so the message
is redelivered instead of lost.

Partitions are consumed concurrently (`CONSUMER_WORKERS` consumers, each with
its own partitions and its own commits), so a message waiting for a retry
holds up only its own partitions; order within a partition is kept.
"""

import asyncio
from contextlib import suppress

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.publisher import DefaultPublisher

from . import commits, events
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
    # Outermost: it sees what the dead-letter middleware lets through.
    router.add_middleware(
        commits.CommitPolicy(
            max_pending=settings.commit_max_pending, interval=settings.commit_interval_seconds
        )
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
        ack_policy=AckPolicy.MANUAL,  # commits.CommitPolicy commits
        auto_offset_reset="earliest",
        max_workers=settings.consumer_workers,
    )
    async def on_value_model_requested(
        event: events.ValueModelRequested,
    ) -> None:
        """Handle a request and emit the result, keyed like the request."""
        result = handle(event)
        # Not awaiting Kafka's acknowledgement here: the commit waits for it.
        commits.expect(
            await produced.publish(result, key=event.company_name.encode(), no_confirm=True)
        )

    return router


def stop_fetching(broker: KafkaBroker) -> None:
    """Start nothing new: FastStream drops, uncommitted, what it fetches from now on."""
    for subscriber in broker.subscribers:
        subscriber.running = False


async def drain(broker: KafkaBroker, grace: float) -> None:
    """Stop fetching and wait up to `grace` seconds for the messages in flight.

    Called at shut-down before `broker.stop()`, while the consumers are still
    in their group, so the last messages handled are committed and the next
    instance starts right after them. (FastStream's per-partition subscriber
    closes its consumers before it waits, which would lose those commits.) A
    message fetched but not started is not committed: the next instance gets it.
    """
    stop_fetching(broker)
    with suppress(TimeoutError):
        async with asyncio.timeout(grace):
            for subscriber in broker.subscribers:
                # FastStream counts the messages in flight in a lock with `wait_release`.
                wait_release = getattr(subscriber.lock, "wait_release", None)
                if wait_release is not None:
                    await wait_release(grace)
    for policy in commit_policies(broker):
        with suppress(Exception):  # uncommitted messages are consumed again
            async with asyncio.timeout(grace):
                await policy.close()


def commit_policies(broker: KafkaBroker) -> list[commits.CommitPolicy]:
    found: dict[int, commits.CommitPolicy] = {}
    for subscriber in broker.subscribers:
        for middleware in getattr(subscriber, "_broker_middlewares", ()):
            if isinstance(middleware, commits.CommitPolicy):
                found[id(middleware)] = middleware
    return list(found.values())
