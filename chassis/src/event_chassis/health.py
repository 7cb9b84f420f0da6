"""Liveness and readiness.

Live means the process serves HTTP. Ready means it can do its work: Kafka
answers and every consumer has joined its group and received its partitions.
Consul's check calls `/health/ready`, so an instance that loses Kafka stops
receiving traffic routed through Consul; Kubernetes' readiness probe does the
same. Kafka is checked in the background every `KAFKA_CHECK_INTERVAL_SECONDS`,
so a check costs no request to Kafka.
"""

import asyncio
import logging
from contextlib import suppress

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import Gauge

logger = logging.getLogger(__name__)

KAFKA = "kafka"


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


class KafkaMonitor:
    """Pings Kafka in the background and keeps readiness and a gauge up to date."""

    def __init__(
        self, broker: KafkaBroker, readiness: Readiness, connected: Gauge, interval: float
    ) -> None:
        self.broker = broker
        self.readiness = readiness
        self.connected = connected
        self.interval = interval
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
