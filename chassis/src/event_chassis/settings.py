"""The settings every service has, read from the environment once at start-up.

A service subclasses `ServiceSettings`, adds its own fields (its topics, say)
and sets its defaults (its name, port, consumer group). Every field is an
environment variable of the same name in upper case. Kafka, Consul and
OpenTelemetry use the names their own tools use (`KAFKA_BOOTSTRAP_SERVERS`,
`CONSUL_HTTP_ADDR`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...), so one `.env` serves
the service, the CLI tools and the SDKs alike.

Secrets (the `SecretStr` fields) are read from files first, then from a Vault-API server
(OpenBao or Vault), then from the environment: see `event_chassis.secrets`.
"""

import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from . import secrets

Exporter = Literal["otlp", "console", "none"]
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class ServiceSettings(BaseSettings):
    """What the chassis needs; defaults suit a laptop running the platform."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")
    # Where each secret came from ({field: "file ..." | "openbao ..." | "environment"}),
    # and, with short-lived database credentials, what gives the current DSN.
    _secret_sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _database_credentials: Callable[[], str] | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Files, then OpenBao, then the environment (noted, to warn about it at start)."""
        secrets.start_recording()
        return (
            init_settings,
            secrets.FileSecrets(settings_cls),
            secrets.VaultSecrets(settings_cls),
            secrets.PlainSecretsWarning(settings_cls, env_settings),
            secrets.PlainSecretsWarning(settings_cls, dotenv_settings),
            file_secret_settings,
        )

    def model_post_init(self, context: Any, /) -> None:
        self._secret_sources = secrets.recorded()

    # Identity: a service sets these defaults in its own subclass.
    otel_service_name: str = "event-service"
    service_version: str = "0.0.0"
    service_owner: str = ""
    service_instance_id: str = Field(default_factory=_default_instance_id)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Levels of single loggers over LOG_LEVEL: "value_architect=DEBUG,aiokafka=WARNING".
    log_levels: str = ""
    # JSON lines, or a readable format for people; "auto" picks readable on a terminal.
    log_format: Literal["json", "console", "auto"] = "auto"

    # HTTP: 127.0.0.1 unless told otherwise (the container image sets 0.0.0.0).
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Address other hosts reach this instance on; empty means the HTTP host, or this
    # machine's IP address when listening on every interface (an IP, not a name, so
    # Consul DNS answers Kong with A records).
    service_advertise_address: str = ""
    max_request_body_bytes: int = 64 * 1024

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""
    kafka_check_interval_seconds: float = 5.0
    # A write unacknowledged this long makes the service unready (too few in-sync
    # replicas, say: the brokers answer a ping but refuse every write).
    kafka_write_ack_seconds: float = 5.0
    consumer_group: str = "event-service"
    dead_letter_topic: str = "event-service.dead-letter"
    # Consumers this instance runs in its group, each with its own partitions, so a
    # message being retried holds up only its own partitions. More than the topic has
    # partitions would sit idle.
    consumer_workers: int = 1
    # Each consumer takes up to this many messages at a time and commits them together,
    # once Kafka has acknowledged all their results. Larger batches cost less per
    # message; a batch must finish well within the shutdown grace period.
    consumer_batch_size: int = 1000
    max_event_bytes: int = 1024 * 1024
    handler_max_retries: int = Field(default=3, ge=0)
    handler_retry_backoff_seconds: float = Field(default=0.2, ge=0)
    shutdown_grace_seconds: float = 15.0
    # A dependency that is down (a handler raising `DependencyUnavailableError`,
    # `ConnectionError` or `TimeoutError` after its retries) pauses the record's partition
    # this long, doubling up to the maximum, instead of dead-lettering what is not broken.
    partition_hold_seconds: float = 1.0
    partition_max_hold_seconds: float = 30.0

    # Kafka clients: aiokafka's names and meanings (see event_chassis.clients for why
    # these defaults). The producer is the results' and the publishers'.
    kafka_request_timeout_ms: int = Field(default=40_000, gt=0)  # producers and consumers
    kafka_producer_acks: Literal["all", "1", "0"] = "all"
    kafka_producer_linger_ms: int = Field(default=0, ge=0)
    kafka_producer_batch_bytes: int = Field(default=256 * 1024, gt=0)
    kafka_producer_max_request_bytes: int = Field(default=1024 * 1024, gt=0)
    kafka_consumer_max_poll_interval_ms: int = Field(default=300_000, gt=0)
    kafka_consumer_session_timeout_ms: int = Field(default=10_000, gt=0)
    kafka_consumer_heartbeat_interval_ms: int = Field(default=250, gt=0)
    kafka_consumer_fetch_wait_ms: int = Field(default=50, gt=0)
    kafka_consumer_fetch_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    kafka_consumer_max_partition_fetch_bytes: int = Field(default=1024 * 1024, gt=0)

    # The garbage collector tuned for a long-running service (event_chassis.runtime);
    # false keeps CPython's defaults.
    gc_tuning: bool = True

    # PostgreSQL (with the `postgres` extra): a DSN naming role, password, host and database,
    # best from a file (DATABASE_URL_FILE, mode 0600), which wins over DATABASE_URL.
    database_url: SecretStr = SecretStr("")
    database_url_file: str = ""
    database_pool_size: int = Field(default=5, gt=0)
    database_check_interval_seconds: float = Field(default=5.0, gt=0)
    # The outbox relay runs in the service (false: something else publishes the outbox,
    # e.g. Debezium); it polls this often, and at once when PostgreSQL notifies a commit.
    outbox_relay: bool = True
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=500, gt=0)
    # Keys hash into this many buckets; each is published by one relay at a time, so the
    # order per key holds with several replicas. Keep it equal across a service's replicas.
    outbox_buckets: int = Field(default=16, gt=0)
    # A row Kafka refuses (too large, a topic it may not write) this often is dead-lettered;
    # while Kafka is away rows just wait.
    outbox_max_attempts: int = Field(default=5, gt=0)
    # Published rows and inbox entries are deleted after this long.
    outbox_retention_hours: float = Field(default=24.0, gt=0)
    inbox_retention_days: float = Field(default=14.0, gt=0)

    # Consul
    consul_enabled: bool = True
    consul_http_addr: str = "http://127.0.0.1:8500"
    consul_http_token: SecretStr = SecretStr("")
    consul_check_interval: str = "5s"
    consul_deregister_critical_after: str = "1m"

    # OpenTelemetry: the SDK's own variable names and meanings.
    otel_exporter_otlp_endpoint: str = "http://127.0.0.1:4318"
    otel_sdk_disabled: bool = False
    otel_traces_exporter: Exporter = "otlp"
    otel_logs_exporter: Exporter = "otlp"
    # A request is sampled where it starts (the HTTP API, or whoever produced the first
    # message); every later hop follows that decision, so a trace is whole or absent.
    # One request in a hundred: a sampled message's spans cost some 80 µs of CPU to
    # record and export, so at a tenth a service under full load spent 8 ms more per
    # 1,000 messages (34 against 26, measured side by side), a third of what a bare
    # aiokafka loop spends. Raise it where traffic is low (the local platform: 100 %).
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = "parentbased_traceidratio"
    otel_traces_sampler_arg: float = Field(default=0.01, ge=0, le=1)

    # Validators, not Field constraints: a service that sets its own default
    # (`consumer_workers: int = 3`) replaces the field, but not these.
    @field_validator(
        "consumer_workers",
        "consumer_batch_size",
        "shutdown_grace_seconds",
        "kafka_check_interval_seconds",
        "kafka_write_ack_seconds",
        "partition_hold_seconds",
        "partition_max_hold_seconds",
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("log_levels")
    @classmethod
    def _levels(cls, levels: str) -> str:
        for entry in filter(None, levels.split(",")):
            name, _, level = entry.partition("=")
            if not name.strip() or level.strip().upper() not in LEVELS:
                raise ValueError(f"{entry!r} is not logger=LEVEL (LEVEL one of {LEVELS})")
        return levels

    @property
    def logger_levels(self) -> dict[str, str]:
        """LOG_LEVELS as {logger: LEVEL}."""
        entries = (entry.partition("=") for entry in self.log_levels.split(",") if entry)
        return {name.strip(): level.strip().upper() for name, _, level in entries}

    @field_validator("http_port")
    @classmethod
    def _port(cls, port: int) -> int:
        if not 1 <= port <= 65535:
            raise ValueError("must be a port number from 1 to 65535")
        return port

    @property
    def advertise_address(self) -> str:
        if self.service_advertise_address:
            return self.service_advertise_address
        if self.http_host in {"0.0.0.0", "::"}:
            return socket.gethostbyname(socket.gethostname())
        return self.http_host

    @property
    def secret_sources(self) -> dict[str, str]:
        """Where each secret that is set came from (never its value)."""
        return dict(self._secret_sources)

    def use_database_credentials(self, dsn: Callable[[], str]) -> None:
        """Take the DSN from ``dsn`` from now on (OpenBao's short-lived credentials)."""
        self._database_credentials = dsn

    def database_dsn(self) -> str:
        """The database's DSN: the current short-lived credentials' if any, else
        DATABASE_URL_FILE's (read again each time: a rotated file counts), else DATABASE_URL."""
        if self._database_credentials is not None:
            return self._database_credentials()
        if self.database_url_file:
            return Path(self.database_url_file).read_text().strip()
        return self.database_url.get_secret_value()

    @property
    def service_id(self) -> str:
        """Unique per instance, so many replicas register side by side."""
        return f"{self.otel_service_name}-{self.service_instance_id}"
