"""Liveness and readiness.

Live means the process serves HTTP. Ready means it can do its work: Kafka is
connected. Consul's check calls `/health/ready`, so an instance that loses
Kafka stops receiving traffic routed through Consul.
"""

from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker


@dataclass
class Readiness:
    """Whether the broker has been started, and if not, why not."""

    broker_started: bool = False
    reason: str = "Kafka not connected yet"

    def started(self) -> None:
        self.broker_started, self.reason = True, ""

    def failed(self, reason: str) -> None:
        self.broker_started, self.reason = False, reason


def create_router(broker: KafkaBroker, readiness: Readiness) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["operations"])

    @router.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/ready", responses={503: {"description": "Not ready, with the reason"}})
    async def ready() -> JSONResponse:
        if not readiness.broker_started:
            return _not_ready(readiness.reason)
        if not await broker.ping(timeout=2.0):
            return _not_ready("Kafka does not answer")
        return JSONResponse({"status": "ready"})

    return router


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
