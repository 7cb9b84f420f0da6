"""Settings come from the standard environment variables."""

import pytest
from faststream.security import SASLPlaintext, SASLScram512

from value_architect.config import Settings
from value_architect.security import kafka_security


def test_standard_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "http://consul:8500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")

    settings = Settings(_env_file=None)

    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.consul_http_addr == "http://consul:8500"
    assert settings.otel_exporter_otlp_endpoint == "http://jaeger:4318"
    assert settings.service_id.startswith("renamed-")


def test_every_instance_gets_its_own_id() -> None:
    first, second = Settings(_env_file=None), Settings(_env_file=None)

    assert first.service_id != second.service_id


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
