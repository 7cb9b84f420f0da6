# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
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
    requests: Publisher[events.{{ cookiecutter.__consumed_event }}],
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["{{ cookiecutter.api_resource }}"])

    @router.post(
        "/{{ cookiecutter.api_resource }}",
        status_code=status.HTTP_202_ACCEPTED,
        responses={503: {"description": "Kafka is not connected"}},
    )
    async def request_{{ cookiecutter.api_resource | replace('-', '_') }}(
        body: events.ValueModelSubject,
    ) -> Accepted:
        """Publish a `{{ cookiecutter.consumes_topic }}` event; the work happens asynchronously."""
        event = events.{{ cookiecutter.__consumed_event }}(**body.model_dump())
        await requests.publish(event, key=event.company_name.encode())
        return Accepted(event_id=event.event_id, trace_id=current_trace_id())

    return router
