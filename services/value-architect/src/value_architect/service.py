# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""What the service consumes, publishes and serves, declared on the platform's chassis."""

from event_chassis import Service

from . import api, events, handlers
from .settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    service = Service(settings, description="Turns value-model requests into value models.")
    service.consume(settings.consumes_topic, handlers.handle, publish_to=settings.produces_topic)
    requests = service.publisher(
        settings.consumes_topic,
        events.ValueModelRequested,
        description="Emitted by the HTTP API for every accepted request.",
    )
    service.include_router(api.create_router(requests))
    return service
