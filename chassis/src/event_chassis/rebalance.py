"""Finish the batch in flight before a consumer hands its partitions over.

When a consumer joins or leaves the group (a new instance, a scale-down, or
this instance's own consumers starting one after another), Kafka rebalances
and every consumer gives up its partitions. A batch still being handled then
cannot commit, and the partitions' new owner would handle it again. Kafka
waits for each consumer's revoke callback before it reassigns anything, and a
commit from the current generation is still accepted meanwhile: so the
callback waits (bounded) until the batch in flight has been committed. The
first assignment also tells readiness that this consumer has joined.
"""

import asyncio
from contextlib import suppress
from types import TracebackType
from typing import Any

from aiokafka import ConsumerRebalanceListener
from prometheus_client import Gauge

from .health import Readiness
from .partitions import Partitions


class InFlight:
    """Whether one consumer is handling a batch; `wait` returns once it is not."""

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self._idle.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._idle.set()

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    async def wait(self, seconds: float) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._idle.wait()


class FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    def __init__(
        self,
        name: str,
        in_flight: InFlight,
        partitions: Partitions,
        readiness: Readiness,
        lag: Gauge,
        group: str,
        timeout: float,
    ) -> None:
        self.name = name
        self.in_flight = in_flight
        self.partitions = partitions
        self.readiness = readiness
        self.lag = lag
        self.group = group
        self.timeout = timeout
        readiness.fail(name, f"{name} has not joined its group yet")

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        if revoked:
            await self.in_flight.wait(self.timeout)
        self.partitions.revoked(revoked)
        for partition in revoked:  # the next owner reports their lag
            with suppress(KeyError):
                self.lag.remove(partition.topic, str(partition.partition), self.group)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        """The consumer resumes from the committed offsets; it is in its group now."""
        self.readiness.ok(self.name)
