# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""The HTTP API: accepts requests and turns them into events."""

from uuid import UUID
{% if cookiecutter.database == "postgres" %}
from event_chassis import current_trace_id
from event_chassis.database import Database
{%- else %}
from event_chassis import Publisher, current_trace_id
{%- endif %}
from fastapi import APIRouter, status
from pydantic import BaseModel

from . import events{% if cookiecutter.database == "postgres" %}, models{% endif %}


class Accepted(BaseModel):
    event_id: UUID
    trace_id: str


{% if cookiecutter.database == "postgres" -%}
def create_router(database: Database, topic: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["{{ cookiecutter.api_resource }}"])

    @router.post(
        "/{{ cookiecutter.api_resource }}",
        status_code=status.HTTP_201_CREATED,
        responses={503: {"description": "PostgreSQL is not reachable"}},
    )
    async def request_{{ cookiecutter.api_resource | replace('-', '_') }}(
        body: events.ValueModelSubject,
    ) -> Accepted:
        """Save the request and its `{{ cookiecutter.consumes_topic }}` event in one transaction.

        The event is published once the transaction commits (the chassis' outbox), so there
        is never a saved request without its event, nor an event for a request not saved.
        """
        event = events.{{ cookiecutter.__consumed_event }}(**body.model_dump())
        async with database.transaction() as session:
            session.add(models.Request(id=event.event_id, **body.model_dump()))
            await database.outbox.add(session, topic, event, key=event.company_name)
        return Accepted(event_id=event.event_id, trace_id=current_trace_id())

    return router
{%- else -%}
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
{%- endif %}
