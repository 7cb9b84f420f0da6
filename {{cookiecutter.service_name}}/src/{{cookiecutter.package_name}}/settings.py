# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""The service's settings: the chassis' own (Kafka, Consul, telemetry, ...) plus its topics.

Every field is an environment variable of the same name in upper case (see README.md).
"""

from event_chassis import ServiceSettings


class Settings(ServiceSettings):
    otel_service_name: str = "{{ cookiecutter.service_name }}"
    service_version: str = "{{ cookiecutter.version }}"
    service_owner: str = "{{ cookiecutter.owner }}"
    http_port: int = {{ cookiecutter.http_port }}
    consumer_group: str = "{{ cookiecutter.consumer_group }}"
    consumer_workers: int = {{ [cookiecutter.topic_partitions | int, 4] | min }}
    dead_letter_topic: str = "{{ cookiecutter.dead_letter_topic }}"
    consumes_topic: str = "{{ cookiecutter.consumes_topic }}"
    produces_topic: str = "{{ cookiecutter.produces_topic }}"
