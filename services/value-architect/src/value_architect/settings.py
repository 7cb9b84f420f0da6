# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""The service's settings: the chassis' own (Kafka, Consul, telemetry, ...) plus its topics.

Every field is an environment variable of the same name in upper case (see README.md).
"""

from event_chassis import ServiceSettings


class Settings(ServiceSettings):
    otel_service_name: str = "value-architect"
    service_version: str = "0.1.0"
    service_owner: str = "team-value"
    http_port: int = 8011
    consumer_group: str = "value-architect"
    consumer_workers: int = 3
    dead_letter_topic: str = "value-architect.dead-letter"
    consumes_topic: str = "value-model.requested"
    produces_topic: str = "value-model.created"
