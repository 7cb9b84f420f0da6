"""Liveness and readiness.

Live means the process serves HTTP. Ready means it can do its work: Kafka
answers, takes writes, and every consumer has joined its group and received its
partitions. Consul's check calls `/health/ready`, so an instance that loses Kafka
stops receiving traffic routed through Consul; Kubernetes' readiness probe does
the same. Kafka is checked in the background every `KAFKA_CHECK_INTERVAL_SECONDS`,
so a check costs no request to Kafka.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import Gauge

logger = logging.getLogger(__name__)

KAFKA = "kafka"
KAFKA_WRITES = "kafka-writes"


class Readiness:
    """What keeps the service from being ready, by component; ready when nothing does."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {KAFKA: "Kafka not connected yet"}
        self.became_ready = asyncio.Event()  # for whoever must act the moment it is

    @property
    def ready(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems.values())

    def fail(self, component: str, reason: str) -> None:
        self.problems[component] = reason
        self.became_ready.clear()

    def ok(self, component: str) -> None:
        self.problems.pop(component, None)
        if not self.problems:
            self.became_ready.set()


class KafkaError(RuntimeError):
    """Kafka cannot be reached; the HTTP API answers 503 with the reason."""


class Writes:
    """How long the oldest write still waiting for Kafka's acknowledgement has waited.

    A ping is answered while any broker is. With fewer in-sync replicas than
    `min.insync.replicas`, the brokers still answer but refuse every write
    (NotEnoughReplicas), and aiokafka retries it until its request timeout (40 s
    by default). So readiness watches the write path too.
    """

    def __init__(self) -> None:
        self._since: dict[int, float] = {}  # insertion order: the first is the oldest
        self._tokens = itertools.count()
        self.acknowledged_at = 0.0  # monotonic time of the last write acknowledged

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around an await of Kafka's acknowledgements."""
        token = next(self._tokens)
        self._since[token] = time.monotonic()
        try:
            yield
        finally:
            del self._since[token]

    def acknowledged(self) -> None:
        """Kafka acknowledged a write just now."""
        self.acknowledged_at = time.monotonic()

    def oldest(self) -> float:
        """Seconds the oldest unacknowledged write has waited; 0 with none waiting."""
        for since in self._since.values():
            return time.monotonic() - since
        return 0.0


class KafkaMonitor:
    """Checks Kafka in the background and keeps readiness and a gauge up to date.

    Kafka is unready when a ping gets no answer, or when a write has waited
    longer than `ack_bound` seconds for its acknowledgement.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        readiness: Readiness,
        connected: Gauge,
        interval: float,
        writes: Writes,
        ack_bound: float,
    ) -> None:
        self.broker = broker
        self.readiness = readiness
        self.connected = connected
        self.interval = interval
        self.writes = writes
        self.ack_bound = ack_bound
        self._stuck_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="kafka-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            reachable = await self.broker.ping(timeout=min(self.interval, 2.0))
            was_reachable = KAFKA not in self.readiness.problems
            self.connected.set(1 if reachable else 0)
            if reachable:
                self.readiness.ok(KAFKA)
            else:
                self.readiness.fail(KAFKA, "Kafka does not answer")
            if reachable != was_reachable:
                log = logger.info if reachable else logger.warning
                log("Kafka %s", "reachable again" if reachable else "does not answer")
            self.check_writes()

    def check_writes(self) -> None:
        """Unready past the bound; ready again once a write is acknowledged or none waits.

        A write that times out is retried (a consumed batch is read again), so the
        oldest wait restarts from 0: that alone does not make Kafka ready again.
        """
        waited = self.writes.oldest()
        stuck = KAFKA_WRITES in self.readiness.problems
        if waited > self.ack_bound:
            reason = f"Kafka has not acknowledged a write for {waited:.0f} s"
            self.readiness.fail(KAFKA_WRITES, reason)
            if not stuck:
                self._stuck_at = time.monotonic()
                logger.warning("%s", reason)
        elif stuck and (waited == 0 or self.writes.acknowledged_at > self._stuck_at):
            self.readiness.ok(KAFKA_WRITES)
            logger.info("Kafka acknowledges writes again")


def create_router(readiness: Readiness) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["operations"])

    @router.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/ready", responses={503: {"description": "Not ready, with the reason"}})
    async def ready() -> JSONResponse:
        if readiness.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": readiness.reason}, status_code=503)

    return router
