"""Batch consumers declared from a plain handler function.

A service writes `def handle(event: Requested) -> Created | None` and calls
`Service.consume(topic, handle, publish_to=...)`; the event types come from
the handler's annotations, so the AsyncAPI document shows the real schemas.

Each consumer takes up to `CONSUMER_BATCH_SIZE` records at a time. Every
record is validated and handled on its own, inside its own span whose parent
is the producer's span (from the record's `traceparent`), so one request is
one trace across services; a bad record is retried or dead-lettered without
failing the batch (see `retry`). Results are keyed like their request and
go out in record batches (see `results`). Once Kafka has acknowledged every
result, the batch commits, per partition, the offset after the last record it
finished; what it did not finish is read again (see `partitions`). So delivery
is at least once, and metrics cost once per batch.

A batch has a time budget (`clients.batch_seconds`): a record that would need
longer, in retries say, is left for the next batch with its attempts counted, so a
batch never outlasts the poll interval or the shut-down grace. A plain `def`
handler runs on a worker thread, as FastAPI runs `def` endpoints, so blocking I/O
in it stops neither the other consumers nor the HTTP API nor the heartbeats; an
`async def` handler runs on the event loop and must not block.
"""

import asyncio
import inspect
import logging
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import NoneType, UnionType
from typing import Any

from aiokafka import TopicPartition
from faststream.kafka import KafkaMessage
from faststream.kafka.annotations import KafkaMessage as Message
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, SkipValidation

from ._faststream import aiokafka_consumer
from .dead_letter import UNDECODABLE_HEADERS, DeadLetters, DeadLetterUnavailableError
from .metrics import MessagingMetrics
from .partitions import Partitions
from .rebalance import InFlight
from .results import Outbox, Results
from .retry import PoisonMessageError, RetryPolicy
from .tracing import extract, kafka_headers, messaging_attributes

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]  # (event[, session]) -> result | None, plain or async
Call = Callable[[BaseModel, Any], Awaitable[BaseModel | None]]  # (event, record) -> result
JSON = "application/json"


class Outcome(Enum):
    """What became of one record."""

    DONE = "done"  # handled (its result queued) or dead-lettered: commit past it
    LATER = "later"  # the batch's time is up: read it again with the next batch
    HOLD = "hold"  # a dependency or the dead-letter topic is down: pause its partition


@dataclass(frozen=True)
class EventTypes:
    """What a handler consumes and, if anything, produces; whether it takes a session."""

    consumed: type[BaseModel]
    produced: type[BaseModel] | None
    stateful: bool = False  # `handle(event, session)`: see `inbox`

    @classmethod
    def of(cls, handler: Handler) -> "EventTypes":
        """Read the types from `handler(event: In[, session: AsyncSession]) -> Out | None`."""
        hints = typing.get_type_hints(handler)
        parameters = list(inspect.signature(handler).parameters)
        name = getattr(handler, "__qualname__", repr(handler))
        stateful = len(parameters) == 2
        if (
            not 1 <= len(parameters) <= 2
            or not _is_model(hints.get(parameters[0]))
            or (stateful and not _is_session(hints.get(parameters[1])))
        ):
            raise TypeError(
                f"{name} must take one event, annotated with a pydantic model, "
                "and optionally a database session (sqlalchemy's AsyncSession)"
            )
        returned = hints.get("return", NoneType)
        options = typing.get_args(returned) if isinstance(returned, UnionType) else (returned,)
        produced = [option for option in options if option is not NoneType]
        if len(produced) > 1 or (produced and not _is_model(produced[0])):
            raise TypeError(f"{name} must return one pydantic model, or None")
        return cls(hints[parameters[0]], produced[0] if produced else None, stateful)


def _is_session(annotation: Any) -> bool:
    try:
        from sqlalchemy.ext.asyncio import AsyncSession
    except ImportError:  # the postgres extra is not installed
        return False
    return isinstance(annotation, type) and issubclass(annotation, AsyncSession)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class MessagePipeline:
    """One record: validate, handle, retry, hold or dead-letter, queue the result."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        call: Call,
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
        self.call = call
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
        # Attempts of records left for later or held, so their series goes on (and a
        # record is dead-lettered once) when they come back: (partition, offset) -> attempts.
        self.attempts: dict[tuple[int, int], int] = {}

    async def process(self, record: Any, outbox: Outbox, deadline: float) -> Outcome:
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
            outcome, result = await self._outcome(record, span, deadline)
            if result is not None and self.output is not None:
                value = result.model_dump_json().encode()
                await outbox.add(self.output, value, record.key, kafka_headers(span, JSON))
            return outcome
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

    async def _outcome(
        self, record: Any, span: trace.Span, deadline: float
    ) -> tuple[Outcome, BaseModel | None]:
        """What became of the record, and the handler's result if there is one."""
        if problem := self._poison(record):
            return await self._dead_letter(record, problem, 0, span), None
        position = (record.partition, record.offset)
        attempt = self.attempts.pop(position, 0)
        while True:
            attempt += 1
            try:
                event = self.consumed.model_validate_json(record.value or b"")
                return Outcome.DONE, await self.call(event, record)
            except Exception as error:
                delay = self.retry.delay(error, attempt)
                waits = delay is None and self.retry.waits_for_dependency(error)
                if delay is None and not waits:
                    outcome = await self._dead_letter(record, error, attempt, span)
                    if outcome is Outcome.HOLD:
                        self.attempts[position] = attempt
                    return outcome, None
                reason = type(error).__name__
                if waits or time.monotonic() + (delay or 0) > deadline:
                    self.attempts[position] = attempt
                    span.add_event("put_back", {"attempt": attempt, "error.type": reason})
                    logger.warning("Handler failed (%r) at attempt %d; tried later", error, attempt)
                    return (Outcome.HOLD if waits else Outcome.LATER), None
                span.add_event(
                    "retry", {"attempt": attempt, "error.type": reason, "delay_seconds": delay}
                )
                self.metrics.retries.labels(self.topic, self.group, reason).inc()
                logger.warning("Handler failed (%r); retry %d in %.2fs", error, attempt, delay)
                await asyncio.sleep(delay or 0)

    def _poison(self, record: Any) -> PoisonMessageError | None:
        if record.headers and (undecodable := dict(record.headers).get(UNDECODABLE_HEADERS)):
            return PoisonMessageError(f"headers not UTF-8: {undecodable.decode()}")
        size = len(record.value or b"")
        if size > self.max_event_bytes:
            return PoisonMessageError(f"message of {size} bytes exceeds {self.max_event_bytes}")
        return None

    async def _dead_letter(
        self, record: Any, error: BaseException, attempts: int, span: trace.Span
    ) -> Outcome:
        reason = type(error).__name__
        labels = (self.topic, self.group)
        try:
            whole = await self.dead_letters.send(record, error, attempts=attempts)
        except DeadLetterUnavailableError as failure:
            cause = type(failure.__cause__ or failure).__name__
            self.metrics.dead_letter_failures.labels(*labels, cause).inc()
            span.add_event("dead_letter_failed", {"error.type": cause})
            logger.error("%s; %s[%s] is held", failure, record.topic, record.partition)
            return Outcome.HOLD
        span.add_event("dead_lettered", {"error.type": reason, "attempts": attempts})
        span.set_attribute("error.type", reason)
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        self.metrics.dead_lettered.labels(*labels, reason).inc()
        if not whole:
            self.metrics.dead_letters_truncated.labels(*labels).inc()
        return Outcome.DONE


def on_a_thread_unless_async(handler: Handler) -> Call:
    """`handler(event)` as a `Call`: a plain function runs on a worker thread.

    `asyncio.to_thread` copies the context, so the handler's logs and spans still
    belong to the message's trace.
    """
    if inspect.iscoroutinefunction(handler):

        async def awaited(event: BaseModel, record: Any) -> BaseModel | None:
            return typing.cast(BaseModel | None, await handler(event))

        return awaited

    async def threaded(event: BaseModel, record: Any) -> BaseModel | None:
        result = await asyncio.to_thread(handler, event)
        if inspect.isawaitable(result):
            result = await result
        return typing.cast(BaseModel | None, result)

    return threaded


class BatchConsumer:
    """One consumer's batches: each record through the pipeline, then one commit."""

    def __init__(
        self, pipeline: MessagePipeline, in_flight: InFlight, partitions: Partitions, budget: float
    ) -> None:
        self.pipeline = pipeline
        self.in_flight = in_flight
        self.partitions = partitions
        self.budget = budget  # seconds a batch may take
        metrics, labels = pipeline.metrics, (pipeline.topic, pipeline.group)
        self.consumed = metrics.consumed.labels(*labels)
        self.duration = metrics.batch_duration.labels(*labels)
        self.sent = metrics.sent.labels(pipeline.output) if pipeline.output else None
        self.lag = metrics.lag

    async def handle(self, message: KafkaMessage) -> None:
        records: Sequence[Any] = message.raw_message  # a batch
        started = time.perf_counter()
        deadline = time.monotonic() + self.budget
        outbox = self.pipeline.results.outbox()
        # By (topic, partition), a plain tuple: a TopicPartition a record costs more.
        done: dict[tuple[str, int], int] = {}  # the next offset to read
        later: dict[tuple[str, int], int] = {}  # the first record not finished
        held: set[tuple[str, int]] = set()
        finished = 0
        with self.in_flight:
            try:
                for record in records:
                    partition = (record.topic, record.partition)
                    if partition in later:
                        continue  # its order holds: nothing after a record left for later
                    if time.monotonic() > deadline:  # the batch's time is up
                        later[partition] = record.offset
                        continue
                    outcome = await self.pipeline.process(record, outbox, deadline)
                    if outcome is Outcome.DONE:
                        done[partition] = record.offset + 1
                        finished += 1
                    else:
                        later[partition] = record.offset
                        if outcome is Outcome.HOLD:
                            held.add(partition)
                sent = await outbox.delivered()
            except Exception as error:
                # Nothing is committed; the next fetch reads the whole batch again.
                logger.error("Batch of %d records failed (%r)", len(records), error)
                return
            await self.partitions.finish(
                {TopicPartition(*p): offset for p, offset in done.items()},
                {TopicPartition(*p): offset for p, offset in later.items()},
                {TopicPartition(*p) for p in held},
            )
        self.consumed.inc(finished)
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
