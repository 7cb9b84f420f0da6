"""The HTTP API: accepts requests and turns them into events."""

from uuid import UUID

from fastapi import APIRouter, HTTPException, status
from faststream.kafka.publisher import DefaultPublisher
from pydantic import BaseModel

from . import events
from .errors import BodyErrorRoute
from .health import Readiness
from .telemetry import current_trace_id


class Accepted(BaseModel):
    event_id: UUID
    trace_id: str


def create_router(publisher: DefaultPublisher, readiness: Readiness) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1",
        tags=["{{ cookiecutter.api_resource }}"],
        route_class=BodyErrorRoute,
    )

    @router.post(
        "/{{ cookiecutter.api_resource }}",
        status_code=status.HTTP_202_ACCEPTED,
        responses={503: {"description": "Kafka is not connected"}},
    )
    async def request_{{ cookiecutter.api_resource | replace('-', '_') }}(body: events.ValueModelSubject) -> Accepted:
        """Publish a `{{ cookiecutter.consumes_topic }}` event; the work happens asynchronously."""
        if not readiness.broker_started:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, readiness.reason)
        event = events.{{ cookiecutter.__consumed_event }}(**body.model_dump())
        await publisher.publish(event, key=event.company_name.encode())
        return Accepted(event_id=event.event_id, trace_id=current_trace_id())

    return router
