# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The HTTP API: accepts requests and turns them into events."""

from uuid import UUID

from event_chassis import current_trace_id
from event_chassis.database import Database
from fastapi import APIRouter, status
from pydantic import BaseModel

from . import events, models


class Accepted(BaseModel):
    event_id: UUID
    trace_id: str


def create_router(database: Database, topic: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["value-models"])

    @router.post(
        "/value-models",
        status_code=status.HTTP_201_CREATED,
        responses={503: {"description": "PostgreSQL is not reachable"}},
    )
    async def request_value_models(
        body: events.ValueModelSubject,
    ) -> Accepted:
        """Save the request and its `value-model.requested` event in one transaction.

        The event is published once the transaction commits (the chassis' outbox), so there
        is never a saved request without its event, nor an event for a request not saved.
        """
        event = events.ValueModelRequested(**body.model_dump())
        async with database.transaction() as session:
            session.add(models.Request(id=event.event_id, **body.model_dump()))
            await database.outbox.add(session, topic, event, key=event.company_name)
        return Accepted(event_id=event.event_id, trace_id=current_trace_id())

    return router
