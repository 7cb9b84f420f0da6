# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""What the service consumes, publishes and serves, declared on the platform's chassis."""

from pathlib import Path

from event_chassis import Service

from . import api, events, handlers
from .settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def create_service(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    service = Service(settings, description="Turns value-model requests into value models.")
    database = service.use_database(migrations=[MIGRATIONS])
    service.consume(settings.consumes_topic, handlers.handle, publish_to=settings.produces_topic)
    service.outbox_topic(
        settings.consumes_topic,
        events.ValueModelRequested,
        description="Emitted through the outbox by the HTTP API for every saved request.",
    )
    service.include_router(api.create_router(database, settings.consumes_topic))
    return service
