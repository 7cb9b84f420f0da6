"""Settings come from the standard environment variables; security from them alone."""

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512

from event_chassis import ServiceSettings, clients
from event_chassis.security import kafka_security
from event_chassis.testing import test_settings

from .example import Settings, create_service


def test_standard_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "http://consul:8500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    monkeypatch.setenv("CONSUMES_TOPIC", "other.topic")

    settings = Settings(_env_file=None)

    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.consul_http_addr == "http://consul:8500"
    assert settings.otel_exporter_otlp_endpoint == "http://collector:4318"
    assert settings.service_id.startswith("renamed-")
    assert settings.consumes_topic == "other.topic"  # a service's own field


def test_every_instance_gets_its_own_id() -> None:
    first, second = Settings(_env_file=None), Settings(_env_file=None)

    assert first.service_id != second.service_id


def test_a_bad_value_is_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_WORKERS", "0")

    with pytest.raises(ValueError, match="consumer_workers"):
        Settings(_env_file=None)


def test_plaintext_kafka_by_default() -> None:
    assert kafka_security(Settings(_env_file=None)) is None


def test_sasl_and_tls_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-environment")

    security = kafka_security(Settings(_env_file=None))

    assert isinstance(security, SASLScram512)
    assert security.use_ssl
    assert security.password == "from-the-environment"


def test_sasl_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")

    security = kafka_security(Settings(_env_file=None))

    assert isinstance(security, SASLPlaintext)
    assert not security.use_ssl


def test_tls_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")

    security = kafka_security(Settings(_env_file=None))

    assert type(security) is BaseSecurity
    assert security.use_ssl


def test_a_port_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "70000")

    with pytest.raises(ValueError, match="http_port"):
        Settings(_env_file=None)


def test_kafka_client_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PRODUCER_ACKS", "1")
    monkeypatch.setenv("KAFKA_PRODUCER_LINGER_MS", "5")
    monkeypatch.setenv("KAFKA_PRODUCER_BATCH_BYTES", "65536")
    monkeypatch.setenv("KAFKA_REQUEST_TIMEOUT_MS", "20000")
    monkeypatch.setenv("KAFKA_CONSUMER_MAX_POLL_INTERVAL_MS", "60000")
    monkeypatch.setenv("KAFKA_CONSUMER_FETCH_MAX_BYTES", "1048576")
    settings = ServiceSettings(_env_file=None)

    producer, consumer = clients.producer(settings), clients.consumer(settings)

    assert (producer["acks"], producer["linger_ms"], producer["max_batch_size"]) == (1, 5, 65536)
    assert producer["request_timeout_ms"] == 20000
    assert consumer["max_poll_interval_ms"] == 60000
    assert consumer["fetch_max_bytes"] == 1048576
    assert clients.batch_seconds(settings) == 7.5  # half the 15 s grace, under half the poll


def test_the_defaults_are_acks_all_and_a_batch_within_half_the_grace() -> None:
    settings = ServiceSettings(_env_file=None)

    assert clients.producer(settings)["acks"] == "all"
    assert clients.batch_seconds(settings) == settings.shutdown_grace_seconds / 2
    short_poll = settings.model_copy(update={"kafka_consumer_max_poll_interval_ms": 4000})
    assert clients.batch_seconds(short_poll) == 2.0


def test_the_consumers_get_the_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_CONSUMER_SESSION_TIMEOUT_MS", "7000")
    monkeypatch.setenv("KAFKA_CONSUMER_MAX_PARTITION_FETCH_BYTES", "2097152")
    service = create_service(test_settings(Settings))

    for subscriber in service.subscribers:
        arguments = subscriber._connection_args
        assert arguments["session_timeout_ms"] == 7000
        assert arguments["max_partition_fetch_bytes"] == 2097152
