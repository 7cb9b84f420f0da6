# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""What the service consumes, publishes and serves, declared on the platform's chassis."""

from event_chassis import Service

from . import {% if cookiecutter.http_api %}api, events, {% endif %}handlers
from .settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    service = Service(settings, description="{{ cookiecutter.description }}")
    service.consume(settings.consumes_topic, handlers.handle, publish_to=settings.produces_topic)
{%- if cookiecutter.http_api %}
    requests = service.publisher(
        settings.consumes_topic,
        events.{{ cookiecutter.__consumed_event }},
        description="Emitted by the HTTP API for every accepted request.",
    )
    service.include_router(api.create_router(requests))
{%- endif %}
    return service
