"""A small service on the chassis, as a team would write one: the tests drive it."""

from uuid import UUID, uuid4

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from event_chassis import PoisonMessageError, Publisher, Service, ServiceSettings
from event_chassis.testing import test_settings


class Settings(ServiceSettings):
    otel_service_name: str = "example"
    service_version: str = "1.2.3"
    consumer_group: str = "example"
    consumer_workers: int = 2
    dead_letter_topic: str = "example.dead-letter"
    consumes_topic: str = "example.requested"
    produces_topic: str = "example.created"


class Requested(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=50)
    event_id: UUID = Field(default_factory=uuid4)


class Created(BaseModel):
    name: str
    source_event_id: UUID


class Behaviour:
    """What the example's handler does; tests change it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.failures: list[Exception] = []
        self.calls = 0


behaviour = Behaviour()


def handle(event: Requested) -> Created | None:
    """Answer a request; `skip` is answered with nothing, `poison` is refused."""
    behaviour.calls += 1
    if behaviour.failures:
        raise behaviour.failures.pop(0)
    if event.name == "skip":
        return None
    if event.name == "poison":
        raise PoisonMessageError("poison is never processed")
    return Created(name=event.name, source_event_id=event.event_id)


def create_router(requests: Publisher[Requested]) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.post("/requests", status_code=status.HTTP_202_ACCEPTED)
    async def request(body: Requested) -> dict[str, str]:
        await requests.publish(body, key=body.name.encode())
        return {"event_id": str(body.event_id)}

    return router


def create_service(settings: Settings | None = None) -> Service:
    settings = settings or test_settings(Settings)
    service = Service(settings, description="An example.")
    service.consume(settings.consumes_topic, handle, publish_to=settings.produces_topic)
    requests = service.publisher(settings.consumes_topic, Requested)
    service.include_router(create_router(requests))
    return service
