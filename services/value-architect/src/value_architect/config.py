"""Settings, read from the environment once at start-up.

Every field is an environment variable of the same name in upper case
(`KAFKA_BOOTSTRAP_SERVERS`, `CONSUL_HTTP_ADDR`, ...). Kafka, Consul and
OpenTelemetry use the variable names their own tools use, so one `.env`
serves the service, the CLI tools and the SDKs alike.
"""

import socket
import uuid
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class Settings(BaseSettings):
    """The service's configuration; defaults suit a laptop running the platform."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Identity
    otel_service_name: str = "value-architect"
    service_version: str = "0.1.0"
    service_instance_id: str = Field(default_factory=_default_instance_id)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # HTTP: 127.0.0.1 unless told otherwise (the container image sets 0.0.0.0)
    http_host: str = "127.0.0.1"
    http_port: int = 8011
    # Address other hosts reach this instance on; empty means the HTTP host,
    # or this machine's IP address when listening on every interface (an IP,
    # not a name, so Consul DNS answers Kong with A records).
    service_advertise_address: str = ""
    max_request_body_bytes: int = 64 * 1024

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    consumer_group: str = "value-architect"
    consumes_topic: str = "value-model.requested"
    produces_topic: str = "value-model.created"
    dead_letter_topic: str = "value-architect.dead-letter"
    # Consumers this instance runs in its group, each with its own partitions, so a
    # message being retried holds up only its own partitions. More than the topic
    # has partitions would sit idle.
    consumer_workers: int = Field(default=3, ge=1)
    max_event_bytes: int = 1024 * 1024
    handler_max_retries: int = 3
    handler_retry_backoff_seconds: float = 0.2
    shutdown_grace_seconds: float = 15.0
    # Each consumer takes up to this many messages at a time and commits them together,
    # once Kafka has acknowledged all their results (see handlers). Larger batches cost
    # less per message; a batch must finish well within the shutdown grace period.
    consumer_batch_size: int = Field(default=1000, ge=1)

    # Consul
    consul_enabled: bool = True
    consul_http_addr: str = "http://127.0.0.1:8500"
    consul_http_token: SecretStr = SecretStr("")
    consul_check_interval: str = "5s"
    consul_deregister_critical_after: str = "1m"

    # OpenTelemetry
    otel_exporter_otlp_endpoint: str = "http://127.0.0.1:4318"
    otel_sdk_disabled: bool = False

    @property
    def advertise_address(self) -> str:
        if self.service_advertise_address:
            return self.service_advertise_address
        if self.http_host in {"0.0.0.0", "::"}:
            return socket.gethostbyname(socket.gethostname())
        return self.http_host

    @property
    def service_id(self) -> str:
        """Unique per instance, so many replicas register side by side."""
        return f"{self.otel_service_name}-{self.service_instance_id}"
