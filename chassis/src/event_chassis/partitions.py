"""One consumer's partitions: what its batch in hand came from, what it commits, what waits.

The chassis never commits "whatever was consumed" (aiokafka's `commit()`): a batch
commits, per partition, the offset after the last record it finished. Everything
else of the batch is read again:

- a batch that never finishes (FastStream's parser or a middleware raising before the
  handler runs, a result that could not be published, a bug) leaves its records in
  hand; the next fetch seeks every partition of it back, after a backoff that grows
  while batches keep failing. FastStream logs and drops such errors, and without
  this its next commit would have moved past the batch for good;
- records left for `later` (the batch's time ran out) are sought back, read at once;
- a partition `held` (its dependency is down, or its dead-letter topic cannot be
  written) is sought back and paused, then resumed after a hold that doubles while
  it keeps failing (1 s up to 30 s by default). The other partitions go on.
"""

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 5.0  # the longest wait before a failed batch is read again


class Partitions:
    """The offsets of one consumer's batch in hand, and its held partitions."""

    def __init__(
        self,
        name: str,
        *,
        hold_seconds: float,
        max_hold_seconds: float,
        failed: Counter,
        held: Gauge,
    ) -> None:
        self.name = name
        self.hold_seconds = hold_seconds
        self.max_hold_seconds = max_hold_seconds
        self.failed = failed  # batches read again because they did not finish
        self.held_gauge = held
        self.consumer: AIOKafkaConsumer | None = None
        self.in_hand: dict[TopicPartition, int] = {}  # first offset of each, in the batch
        self.failures = 0  # batches in a row that did not finish
        self.held: dict[TopicPartition, float] = {}  # paused until (time.monotonic())
        self.holds: dict[TopicPartition, float] = {}  # the next hold's length

    async def before_fetch(self, consumer: AIOKafkaConsumer) -> None:
        """Put back a batch that never finished; resume partitions whose hold is over."""
        self.consumer = consumer
        if self.in_hand:
            self.failures += 1
            self.failed.inc()
            wait = min(0.1 * 2.0 ** (self.failures - 1), MAX_RETRY_SECONDS)
            logger.error(
                "%s: a batch from %s did not finish; it is read again in %.1fs",
                self.name,
                describe(self.in_hand),
                wait,
            )
            self._seek(self.in_hand)
            self.in_hand.clear()
            await asyncio.sleep(wait)
        now = time.monotonic()
        due = [partition for partition, until in self.held.items() if until <= now]
        if due:
            for partition in due:
                del self.held[partition]
            self.held_gauge.dec(len(due))
            consumer.resume(*(p for p in due if p in consumer.assignment()))

    def fetched(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        """The batch about to be handled: aiokafka's `getmany`, records by partition."""
        for partition, records in batches.items():
            if records:
                self.in_hand.setdefault(partition, records[0].offset)

    async def finish(
        self,
        done: Mapping[TopicPartition, int],
        later: Mapping[TopicPartition, int],
        held: set[TopicPartition],
    ) -> None:
        """The batch is over: commit `done` (the next offset of each partition), seek `later`
        back to its first unfinished record, and pause the partitions `held`."""
        self.in_hand.clear()
        self.failures = 0
        if done:  # exactly these: the consumer's position is past records left for later
            await self.commit(done)
        self._seek(later)
        if held:
            self._hold(held)
        for partition in done.keys() - held:
            self.holds.pop(partition, None)  # it works again: the next hold starts short

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit exactly `offsets`. If Kafka refuses (a rebalance gave the partitions to
        another consumer, or Kafka is down), they are read again: a warning, not an error."""
        try:
            await self._consumer().commit(dict(offsets))
        except Exception as error:
            logger.warning(
                "%s: not committed (%s); its records will be read again", self.name, error
            )

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions given to another consumer: it starts them from the committed offsets."""
        for partition in partitions:
            if self.held.pop(partition, None) is not None:
                self.held_gauge.dec()
            self.holds.pop(partition, None)

    def _seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        consumer = self._consumer()
        assigned = consumer.assignment()
        for partition, offset in offsets.items():
            if partition in assigned:  # else its next owner reads it from the committed offset
                consumer.seek(partition, offset)

    def _hold(self, partitions: set[TopicPartition]) -> None:
        consumer = self._consumer()
        mine = [p for p in partitions if p in consumer.assignment()]
        consumer.pause(*mine)
        now = time.monotonic()
        for partition in mine:
            hold = self.holds.get(partition, self.hold_seconds)
            if partition not in self.held:
                self.held_gauge.inc()
            self.held[partition] = now + hold
            self.holds[partition] = min(hold * 2, self.max_hold_seconds)
            logger.warning("%s: %s held for %.1fs", self.name, describe([partition]), hold)

    def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise RuntimeError(f"{self.name}: no batch was fetched through the chassis")
        return self.consumer


def describe(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(sorted(f"{p.topic}[{p.partition}]" for p in partitions))
