# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The HTTP API: accepts requests and turns them into events."""

from uuid import UUID

from event_chassis import Publisher, current_trace_id
from fastapi import APIRouter, status
from pydantic import BaseModel

from . import events


class Accepted(BaseModel):
    event_id: UUID
    trace_id: str


def create_router(
    requests: Publisher[events.ValueModelRequested],
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["value-models"])

    @router.post(
        "/value-models",
        status_code=status.HTTP_202_ACCEPTED,
        responses={503: {"description": "Kafka is not connected"}},
    )
    async def request_value_models(
        body: events.ValueModelSubject,
    ) -> Accepted:
        """Publish a `value-model.requested` event; the work happens asynchronously."""
        event = events.ValueModelRequested(**body.model_dump())
        await requests.publish(event, key=event.company_name.encode())
        return Accepted(event_id=event.event_id, trace_id=current_trace_id())

    return router
