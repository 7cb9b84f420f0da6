"""At-least-once offset commits, batched: commit a message only once its result is in Kafka.

Committing after every message costs a round trip to the group coordinator
per message, and waiting for every publish to be acknowledged before taking
the next message costs another. Instead the handler publishes without
waiting (`Deliveries.publish`), and this middleware records, per partition,
each handled offset with the acknowledgements its results are waiting for.
Every `max_pending` messages, `interval` seconds after the oldest message
not yet committed, as soon as no message came for `idle` seconds, and at
shut-down, it waits for those acknowledgements and commits, per partition,
the offset after the last message whose results are all in Kafka.

So a crash loses nothing: what was not committed is consumed again (at
least once, as before; a few more duplicates, never a gap). A message whose
result Kafka refused rewinds its partition to it, and nothing past it is
committed until it has been handled again. An error that escapes the
handler (the dead-letter middleware lets through only a failed dead-letter
publish) rewinds the partition to the message, as `AckPolicy.NACK_ON_ERROR`
does.
"""

import asyncio
import importlib
import logging
from collections.abc import Awaitable
from contextlib import suppress
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Protocol

from faststream import BaseMiddleware
from faststream.kafka.message import FakeConsumer, KafkaMessage
from faststream.types import AsyncFuncAny

logger = logging.getLogger(__name__)

# aiokafka ships no type hints: its TopicPartition, the key its consumer commits by.
TopicPartition: Any = importlib.import_module("aiokafka").TopicPartition

# The acknowledgements the message being handled is waiting for.
_deliveries: ContextVar[list[Awaitable[Any]] | None] = ContextVar("deliveries", default=None)


def expect(delivery: Any) -> None:
    """Make the message being handled wait for `delivery` (a publish with no_confirm=True)."""
    pending = _deliveries.get()
    if pending is not None and isinstance(delivery, Awaitable):
        pending.append(delivery)


class Consumer(Protocol):
    """What this module uses of aiokafka's consumer."""

    async def commit(self, offsets: dict[Any, int]) -> None: ...

    def seek(self, partition: Any, offset: int) -> None: ...

    def assignment(self) -> set[Any]: ...


Partition = tuple[Consumer, Any]  # (consumer, TopicPartition)


class CommitPolicy:
    """Builds the per-message middleware; holds the offsets not yet committed."""

    def __init__(
        self, *, max_pending: int = 1000, interval: float = 0.5, idle: float = 0.01
    ) -> None:
        self.max_pending = max_pending
        self.interval = interval
        self.idle = idle
        self._oldest = self._latest = 0.0  # loop times: first message pending, last handled
        # Per partition, in the order handled: (offset, acknowledgements awaited).
        self._pending: dict[Partition, list[tuple[int, list[Awaitable[Any]]]]] = {}
        # A partition rewound to an offset ignores later offsets until it is handled again.
        self._rewound: dict[Partition, int] = {}
        self._count = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    def __call__(self, msg: Any, /, **kwargs: Any) -> "CommitMiddleware":
        return CommitMiddleware(msg, policy=self, **kwargs)

    async def handled(
        self, consumer: Consumer, record: Any, deliveries: list[Awaitable[Any]]
    ) -> None:
        partition = (consumer, TopicPartition(record.topic, record.partition))
        rewound = self._rewound.get(partition)
        if rewound is not None:
            if record.offset != rewound:
                return  # fetched before the rewind; it comes again
            del self._rewound[partition]
        self._pending.setdefault(partition, []).append((record.offset, deliveries))
        self._latest = asyncio.get_running_loop().time()
        if not self._count:
            self._oldest = self._latest
        self._count += 1
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_when_due())
        if self._count >= self.max_pending:
            await self.flush()

    def rewind(self, consumer: Consumer, record: Any) -> None:
        """Consume `record` again, and commit nothing of its partition past it until then."""
        topic_partition = TopicPartition(record.topic, record.partition)
        partition = (consumer, topic_partition)
        self._rewound[partition] = record.offset
        if partition in self._pending:  # handled after it: they come again too
            kept = [entry for entry in self._pending[partition] if entry[0] < record.offset]
            self._count -= len(self._pending[partition]) - len(kept)
            self._pending[partition] = kept
        with suppress(Exception):  # not assigned any more: its new owner consumes it
            consumer.seek(topic_partition, record.offset)

    async def flush(self) -> None:
        """Commit every handled message whose results Kafka has acknowledged."""
        async with self._lock:
            pending, self._pending, self._count = self._pending, {}, 0
            offsets: dict[Consumer, dict[Any, int]] = {}
            for (consumer, topic_partition), handled in pending.items():
                committable = await self._committable(consumer, topic_partition, handled)
                if committable is not None:
                    offsets.setdefault(consumer, {})[topic_partition] = committable + 1
            for consumer, committed in offsets.items():
                # A partition reassigned meanwhile is consumed again by its new owner.
                assigned = consumer.assignment()
                committed = {tp: offset for tp, offset in committed.items() if tp in assigned}
                if not committed:
                    continue
                try:
                    await consumer.commit(committed)
                except Exception as error:
                    logger.warning("Commit failed (%r); those messages come again", error)

    async def _committable(
        self,
        consumer: Consumer,
        topic_partition: Any,
        handled: list[tuple[int, list[Awaitable[Any]]]],
    ) -> int | None:
        committable = None
        for offset, deliveries in handled:
            try:
                for delivery in deliveries:
                    await delivery
            except Exception as error:
                logger.warning(
                    "Result of %s[%s]@%s not delivered (%r); consuming it again",
                    topic_partition.topic,
                    topic_partition.partition,
                    offset,
                    error,
                )
                record = _Position(topic_partition.topic, topic_partition.partition, offset)
                self.rewind(consumer, record)
                break
            committable = offset
        return committable

    async def _flush_when_due(self) -> None:
        """Commit `interval` after the oldest message pending, or once none came for `idle`.

        Under a steady stream that is every `interval` (or `max_pending`); when the
        stream pauses, the last messages are committed right away.
        """
        loop = asyncio.get_running_loop()
        while self._count:
            due = min(self._oldest + self.interval, self._latest + self.idle)
            if loop.time() < due:
                await asyncio.sleep(due - loop.time())
                continue
            try:
                await self.flush()
            except Exception:
                logger.exception("Periodic commit failed")
                await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Commit what can be committed and stop the timer (at shut-down)."""
        await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            with suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None


class _Position:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


class CommitMiddleware(BaseMiddleware):
    def __init__(self, msg: Any, /, *, policy: CommitPolicy, **kwargs: Any) -> None:
        super().__init__(msg, **kwargs)
        self.policy = policy
        self.reached = False

    async def consume_scope(self, call_next: AsyncFuncAny, msg: KafkaMessage) -> Any:  # type: ignore[override]
        self.reached = True
        consumer: Any = msg.consumer
        record = msg.raw_message
        if isinstance(consumer, FakeConsumer) or isinstance(record, tuple):
            return await call_next(msg)  # the in-memory test broker: nothing to commit
        deliveries: list[Awaitable[Any]] = []
        token = _deliveries.set(deliveries)
        try:
            result = await call_next(msg)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.policy.rewind(consumer, record)
            raise
        finally:
            _deliveries.reset(token)
        await self.policy.handled(consumer, record, deliveries)
        return result

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        # Failed before the handler (FastStream could not parse the record): again.
        consumer: Any = getattr(self.msg, "consumer", None)
        if exc_type is not None and not self.reached and hasattr(consumer, "seek"):
            self.policy.rewind(consumer, self.msg)
        return False
