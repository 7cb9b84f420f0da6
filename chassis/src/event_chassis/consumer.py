"""Batch consumers declared from a plain handler function.

A service writes `def handle(event: Requested) -> Created | None` and calls
`Service.consume(topic, handle, publish_to=...)`; the event types come from
the handler's annotations, so the AsyncAPI document shows the real schemas.

Each consumer takes up to `CONSUMER_BATCH_SIZE` records at a time. Every
record is validated and handled on its own, inside its own span whose parent
is the producer's span (from the record's `traceparent`), so one request is
one trace across services; a bad record is retried or dead-lettered without
failing the batch (see `retry`). Results are keyed like their request and
go out in record batches (see `results`); the batch is committed once Kafka has
acknowledged every result; after an error it seeks back and the batch comes
again. So delivery is at least once, and metrics cost once per batch.
"""

import asyncio
import inspect
import logging
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any

from aiokafka import TopicPartition
from faststream.kafka import KafkaMessage
from faststream.kafka.annotations import KafkaMessage as Message
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, SkipValidation

from ._faststream import aiokafka_consumer
from .dead_letter import UNDECODABLE_HEADERS, DeadLetters
from .metrics import MessagingMetrics
from .rebalance import InFlight
from .results import Outbox, Results
from .retry import PoisonMessageError, RetryPolicy
from .tracing import extract, kafka_headers, messaging_attributes

logger = logging.getLogger(__name__)

Handler = Callable[[Any], Any]  # (event) -> result | None, plain or async
JSON = "application/json"


@dataclass(frozen=True)
class EventTypes:
    """What a handler consumes and, if anything, produces."""

    consumed: type[BaseModel]
    produced: type[BaseModel] | None

    @classmethod
    def of(cls, handler: Handler) -> "EventTypes":
        """Read the types from `handler(event: In) -> Out | None`; a clear error otherwise."""
        hints = typing.get_type_hints(handler)
        parameters = list(inspect.signature(handler).parameters)
        name = getattr(handler, "__qualname__", repr(handler))
        if len(parameters) != 1 or not _is_model(hints.get(parameters[0])):
            raise TypeError(f"{name} must take one event, annotated with a pydantic model")
        returned = hints.get("return", NoneType)
        options = typing.get_args(returned) if isinstance(returned, UnionType) else (returned,)
        produced = [option for option in options if option is not NoneType]
        if len(produced) > 1 or (produced and not _is_model(produced[0])):
            raise TypeError(f"{name} must return one pydantic model, or None")
        return cls(hints[parameters[0]], produced[0] if produced else None)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class MessagePipeline:
    """One record: validate, handle, retry or dead-letter, publish the result."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        handler: Handler,
        types: EventTypes,
        retry: RetryPolicy,
        results: Results,
        output: str | None,
        dead_letters: DeadLetters,
        tracer: trace.Tracer,
        metrics: MessagingMetrics,
        max_event_bytes: int,
    ) -> None:
        self.topic = topic
        self.group = group
        self.handler = handler
        self.consumed = types.consumed
        self.retry = retry
        self.results = results
        self.output = output
        self.dead_letters = dead_letters
        self.tracer = tracer
        self.metrics = metrics
        self.max_event_bytes = max_event_bytes
        self.span_name = f"process {topic}"
        self.attributes = messaging_attributes(
            "process", topic, {"messaging.consumer.group.name": group}
        )

    async def process(self, record: Any, outbox: Outbox) -> None:
        """Handle `record`; its result, if there is one, goes to `outbox`.

        The span is started and made current by hand rather than with
        `start_as_current_span`, whose context manager costs about as much again
        (2 µs a message, measured), and the handler's errors are caught below anyway.
        """
        span = self.tracer.start_span(
            self.span_name, context=extract(record.headers), kind=SpanKind.CONSUMER
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            if span.is_recording():  # the attributes cost only for sampled messages
                span.set_attributes(self.message_attributes(record))
            result = await self._outcome(record, span)
            if result is not None and self.output is not None:
                value = result.model_dump_json().encode()
                await outbox.add(self.output, value, record.key, kafka_headers(span, JSON))
        except BaseException as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            raise
        finally:
            context.detach(token)
            span.end()

    def message_attributes(self, record: Any) -> dict[str, Any]:
        attributes = {
            **self.attributes,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.message.body.size": len(record.value or b""),
        }
        if record.key is not None:
            attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
        return attributes

    async def _outcome(self, record: Any, span: trace.Span) -> BaseModel | None:
        """The handler's result; None if there is none or the record was dead-lettered."""
        if problem := self._poison(record):
            await self._dead_letter(record, problem, 0, span)
            return None
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self.handler(self.consumed.model_validate_json(record.value or b""))
                if inspect.isawaitable(result):
                    result = await result
                return typing.cast(BaseModel | None, result)
            except Exception as error:
                delay = self.retry.delay(error, attempt)
                if delay is None:
                    await self._dead_letter(record, error, attempt, span)
                    return None
                reason = type(error).__name__
                span.add_event(
                    "retry", {"attempt": attempt, "error.type": reason, "delay_seconds": delay}
                )
                self.metrics.retries.labels(self.topic, self.group, reason).inc()
                logger.warning("Handler failed (%r); retry %d in %.2fs", error, attempt, delay)
                await asyncio.sleep(delay)

    def _poison(self, record: Any) -> PoisonMessageError | None:
        if record.headers and (undecodable := dict(record.headers).get(UNDECODABLE_HEADERS)):
            return PoisonMessageError(f"headers not UTF-8: {undecodable.decode()}")
        size = len(record.value or b"")
        if size > self.max_event_bytes:
            return PoisonMessageError(f"message of {size} bytes exceeds {self.max_event_bytes}")
        return None

    async def _dead_letter(
        self, record: Any, error: BaseException, attempts: int, span: trace.Span
    ) -> None:
        reason = type(error).__name__
        span.add_event("dead_lettered", {"error.type": reason, "attempts": attempts})
        span.set_attribute("error.type", reason)
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        await self.dead_letters.send(record, error, attempts=attempts)
        self.metrics.dead_lettered.labels(self.topic, self.group, reason).inc()


class BatchConsumer:
    """One consumer's batches: each record through the pipeline, then one commit."""

    def __init__(self, pipeline: MessagePipeline, in_flight: InFlight) -> None:
        self.pipeline = pipeline
        self.in_flight = in_flight
        metrics, labels = pipeline.metrics, (pipeline.topic, pipeline.group)
        self.consumed = metrics.consumed.labels(*labels)
        self.duration = metrics.batch_duration.labels(*labels)
        self.sent = metrics.sent.labels(pipeline.output) if pipeline.output else None
        self.lag = metrics.lag

    async def handle(self, message: KafkaMessage) -> None:
        records: Sequence[Any] = message.raw_message  # a batch
        started = time.perf_counter()
        outbox = self.pipeline.results.outbox()
        with self.in_flight:
            try:
                for record in records:
                    await self.pipeline.process(record, outbox)
                sent = await outbox.delivered()
            except BaseException:
                await message.nack()  # seek back: the batch is consumed again
                raise
            await commit(message)
        self.consumed.inc(len(records))
        if self.sent is not None:
            self.sent.inc(sent)
        self.duration.observe(time.perf_counter() - started)
        self.report_lag(message, records)

    def report_lag(self, message: KafkaMessage, records: Sequence[Any]) -> None:
        """High-water mark minus the offset just committed, per partition in the batch."""
        consumer = aiokafka_consumer(message)
        if consumer is None:
            return
        last = {(record.topic, record.partition): record.offset for record in records}
        for (topic, partition), offset in last.items():
            highwater = consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                lag = max(highwater - offset - 1, 0)
                self.lag.labels(topic, str(partition), self.pipeline.group).set(lag)


async def commit(message: KafkaMessage) -> None:
    """Commit the batch. If Kafka refuses (a rebalance gave its partitions to another
    consumer, or Kafka is down), the messages are consumed again: a warning, not an error.
    """
    try:
        await message.ack()
    except Exception as error:
        logger.warning("Batch not committed (%s); its messages will be consumed again", error)


async def records_only(message: Any, decode: Any) -> None:
    """The batch handler reads the raw records: skip FastStream's JSON decoding."""


def batch_handler(consumer: BatchConsumer, consumed: type[BaseModel]) -> Callable[..., Any]:
    """The function FastStream calls with each batch.

    Its `payload` parameter only documents the batch in the AsyncAPI document
    (FastStream's decoding is skipped, see `records_only`); the records are
    read from the message and validated one by one.
    """

    async def handle_batch(payload: Any, message: Message) -> None:
        await consumer.handle(message)

    handle_batch.__annotations__["payload"] = SkipValidation[list[consumed]]  # type: ignore[valid-type]
    return handle_batch
