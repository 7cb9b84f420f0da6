# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""What the service consumes, publishes and serves, declared on the platform's chassis."""
{% if cookiecutter.database == "postgres" %}
from pathlib import Path
{% endif %}
from event_chassis import Service

from . import {% if cookiecutter.http_api %}api, events, {% endif %}handlers
from .settings import Settings
{%- if cookiecutter.database == "postgres" %}

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
{%- endif %}


def create_service(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    service = Service(settings, description="{{ cookiecutter.description }}")
{%- if cookiecutter.database == "postgres" %}
    database = service.use_database(migrations=[MIGRATIONS])
{%- endif %}
    service.consume(settings.consumes_topic, handlers.handle, publish_to=settings.produces_topic)
{%- if cookiecutter.http_api %}
{%- if cookiecutter.database == "postgres" %}
    service.outbox_topic(
        settings.consumes_topic,
        events.{{ cookiecutter.__consumed_event }},
        description="Emitted through the outbox by the HTTP API for every saved request.",
    )
    service.include_router(api.create_router(database, settings.consumes_topic))
{%- else %}
    requests = service.publisher(
        settings.consumes_topic,
        events.{{ cookiecutter.__consumed_event }},
        description="Emitted by the HTTP API for every accepted request.",
    )
    service.include_router(api.create_router(requests))
{%- endif %}
{%- endif %}
    return service
