"""Settings come from the standard environment variables; security from them alone."""

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512

from event_chassis.security import kafka_security

from .example import Settings


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
