"""Kafka subscribers and publishers: the service's event-driven work.

Messages are consumed in batches of up to `CONSUMER_BATCH_SIZE`. Each message
is validated and handled on its own (a bad one goes to the dead-letter topic,
see `dead_letter`); the results are published together (see `publishing`);
and the batch is committed only once Kafka has acknowledged every result
(after an error it seeks back, and the batch comes again). So delivery is at
least once, and tracing and metrics cost once per batch, not per message: the
batch gets one "process" span, linked to each message's producer span
(OpenTelemetry's convention for batches).

`CONSUMER_WORKERS` consumers share the partitions, each with its own batches
and commits, so a message waiting for a retry holds up only its own
consumer's partitions; order within a partition is kept. When the group
rebalances, the batch in flight is finished and committed first (`rebalance`).
"""

import asyncio
import logging
from contextlib import suppress
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage, KafkaResponse, KafkaRouter
from faststream.kafka.annotations import KafkaBroker as Broker
from faststream.kafka.annotations import KafkaMessage as Message
from pydantic import SkipValidation

from . import events, publishing
from .config import Settings
from .dead_letter import BinaryHeaderGuard, DeadLetterPolicy
from .rebalance import FinishBatchOnRevoke, wait_for_in_flight

logger = logging.getLogger(__name__)

FETCH_WAIT_MS = 50  # an idle consumer polls this often; a busy one never waits


def handle(event: events.ValueModelRequested) -> events.ValueModelCreated:
    """The work itself, free of Kafka so it is easy to test. Replace with yours."""
    return events.ValueModelCreated(
        company_name=event.company_name,
        industry=event.industry,
        source_event_id=event.event_id,
    )


async def work(value: bytes) -> bytes:
    """One message: validate straight from the bytes, handle, encode the result."""
    result = handle(events.ValueModelRequested.model_validate_json(value))
    return result.model_dump_json().encode()


async def records_only(message: Any, decode: Any) -> None:
    """The handler reads the raw records: skip FastStream's JSON decoding of the batch."""


def create_router(settings: Settings) -> KafkaRouter:
    router = KafkaRouter(middlewares=[BinaryHeaderGuard])
    # Documents the results in the AsyncAPI schema; `publishing` sends them.
    router.publisher(
        settings.produces_topic,
        schema=events.ValueModelCreated,
        description="Emitted once for every request handled.",
    )
    policy = DeadLetterPolicy(
        router.publisher(
            settings.dead_letter_topic,
            schema=bytes,
            description="Messages that could not be processed, with x-dead-letter-* headers.",
        ),
        consumer_group=settings.consumer_group,
        max_retries=settings.handler_max_retries,
        backoff_seconds=settings.handler_retry_backoff_seconds,
        max_event_bytes=settings.max_event_bytes,
    )

    async def on_value_model_requested(
        payload: SkipValidation[list[events.ValueModelRequested]],
        message: Message,
        broker: Broker,
    ) -> None:
        """Handle a batch of requests and emit one result for each.

        `payload` only documents the batch in the AsyncAPI schema (it is None,
        see `records_only`): the records are read from `message` and validated
        one by one, since one bad message must not fail the whole batch.
        """
        try:
            results = []
            for record in message.raw_message:
                result = await policy.run(record, work)
                if result is not None:
                    # Keyed like its request: results for one key stay in order.
                    results.append(KafkaResponse(result, key=record.key))
            deliveries = await publishing.publish_each(broker, settings.produces_topic, results)
            await asyncio.gather(*deliveries)
        except BaseException:
            await message.nack()  # seek back: the batch is consumed again
            raise
        await commit(message)

    # One consumer each in the group: Kafka shares the partitions among them.
    for worker in range(settings.consumer_workers):
        listener = FinishBatchOnRevoke(timeout=settings.shutdown_grace_seconds)
        subscriber = router.subscriber(
            settings.consumes_topic,
            group_id=settings.consumer_group,
            batch=True,
            max_records=settings.consumer_batch_size,
            batch_timeout_ms=FETCH_WAIT_MS,
            ack_policy=AckPolicy.MANUAL,  # see `commit`
            auto_offset_reset="earliest",
            # A rebalance (one per consumer joining at start-up) waits for each member's
            # next heartbeat: every second rather than aiokafka's default of three.
            heartbeat_interval_ms=1000,
            decoder=records_only,
            listener=listener,
            include_in_schema=worker == 0,
        )
        subscriber(on_value_model_requested)
        listener.subscriber = subscriber

    return router


async def commit(message: KafkaMessage) -> None:
    """Commit the batch. If Kafka refuses (a rebalance gave its partitions to another
    consumer, or Kafka is down), the messages are consumed again: a warning, not an error.
    """
    try:
        await message.ack()
    except Exception as error:
        logger.warning("Batch not committed (%s); its messages will be consumed again", error)


def stop_fetching(broker: KafkaBroker) -> None:
    """Start nothing new: FastStream drops, uncommitted, what it fetches from now on."""
    for subscriber in broker.subscribers:
        subscriber.running = False


async def drain(broker: KafkaBroker, grace: float) -> None:
    """Stop fetching and wait up to `grace` seconds for the batches in flight.

    Called at shut-down before `broker.stop()`, while the consumers are still
    in their group, so the last batches handled are committed and the next
    instance starts right after them. A batch fetched but not started is not
    committed: the next instance gets it.
    """
    stop_fetching(broker)
    with suppress(TimeoutError):
        async with asyncio.timeout(grace):
            for subscriber in broker.subscribers:
                await wait_for_in_flight(subscriber, grace)
