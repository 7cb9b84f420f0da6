"""The secured servers are real: Kafka over TLS + SASL/SCRAM, Consul with ACLs.

A secured Kafka (``Kafka(secured=True)``) gets a SASL_SSL listener whose
certificate comes from a CA made at test time with keytool, and SCRAM users
made with Kafka's own tools. A Consul with ``acl=True`` runs with default
deny, a bootstrap token made at start, and service tokens. The clients are
plain aiokafka and urllib, as a service's would be.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from platform_native import configs
from platform_native.probes import http_json
from platform_native.servers import Consul, Kafka, running

from .kafka_clients import create_topics, produce_and_consume

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kafka]:
    secured = Kafka(tmp_path_factory.mktemp("secured") / "kafka", secured=True)
    with running(secured):
        yield secured


def sasl_ssl(
    kafka: Kafka, user: str, password: str, context: ssl.SSLContext | None = None
) -> dict[str, Any]:
    """What a client needs for the secured listener."""
    return {
        "bootstrap_servers": kafka.secure_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_context": context or create_ssl_context(cafile=str(kafka.ca_file)),
    }


def test_sasl_ssl_with_the_right_password_produces_and_consumes(kafka: Kafka) -> None:
    topic = f"secured-{secrets.token_hex(4)}"
    create_topics(kafka, [topic], partitions=1)
    [(user, password)] = kafka.users.items()

    value = asyncio.run(produce_and_consume(topic, b"over TLS", **sasl_ssl(kafka, user, password)))

    assert value == b"over TLS"
    assert kafka.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_a_wrong_password_fails_with_an_authentication_error(
    kafka: Kafka, caplog: pytest.LogCaptureFixture
) -> None:
    [user] = kafka.users
    caplog.set_level(logging.ERROR, logger="aiokafka")

    with pytest.raises(KafkaConnectionError):
        asyncio.run(produce_and_consume("any", b"x", **sasl_ssl(kafka, user, "not-the-password")))

    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text


def test_a_client_that_does_not_trust_the_ca_is_refused(kafka: Kafka) -> None:
    [(user, password)] = kafka.users.items()
    system_trust = create_ssl_context()  # the machine's CAs, not the platform's

    with pytest.raises(KafkaConnectionError):
        asyncio.run(
            produce_and_consume("any", b"x", **sasl_ssl(kafka, user, password, system_trust))
        )


def test_a_user_added_with_kafka_configs_can_connect(kafka: Kafka) -> None:
    topic = f"secured-{secrets.token_hex(4)}"
    create_topics(kafka, [topic], partitions=1)
    password = secrets.token_urlsafe(12)

    kafka.add_user("orders-service", password)

    settings = sasl_ssl(kafka, "orders-service", password)
    assert asyncio.run(produce_and_consume(topic, b"new user", **settings)) == b"new user"


def test_the_secured_listener_is_on_loopback_with_its_own_port(kafka: Kafka) -> None:
    assert kafka.secure_bootstrap.startswith("127.0.0.1:")
    assert kafka.ports()["secure"] not in (kafka.port, kafka.controller_port)
    properties = kafka.config_path.read_text()
    assert f"SASL_SSL://{kafka.secure_bootstrap}" in properties
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in properties


# ---------------------------------------------------------------------- Consul ACLs


@pytest.fixture(scope="module")
def consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consul]:
    secured = Consul(tmp_path_factory.mktemp("secured") / "consul", acl=True)
    with running(secured):
        yield secured


def register(consul: Consul, name: str, token: str | None) -> tuple[int, object]:
    registration = {"ID": f"{name}-{secrets.token_hex(3)}", "Name": name, "Port": 8080}
    headers = {"X-Consul-Token": token} if token else None
    return http_json("PUT", f"{consul.http_url}/v1/agent/service/register", registration, headers)


def test_consul_runs_the_shipped_acl_file(consul: Consul) -> None:
    assert f"-config-file={configs.CONSUL_ACL_CONFIG}" in consul.command()
    _, self_info = http_json(
        "GET",
        f"{consul.http_url}/v1/agent/self",
        headers={"X-Consul-Token": consul.management_token or ""},
    )
    assert self_info["DebugConfig"]["ACLsEnabled"] is True
    assert self_info["DebugConfig"]["ACLResolverSettings"]["ACLDefaultPolicy"] == "deny"


def test_a_service_registers_with_its_token(consul: Consul) -> None:
    token = consul.service_token("orders")

    status, answer = register(consul, "orders", token)

    assert status == 200, answer
    services = consul.api("GET", "/v1/agent/services")
    assert "orders" in {service["Service"] for service in services.values()}


def test_registering_without_a_token_is_refused(consul: Consul) -> None:
    status, answer = register(consul, "orders", None)

    assert status == 403
    assert "Permission denied" in str(answer) and "service:write" in str(answer)


def test_a_service_token_is_good_for_its_own_service_only(consul: Consul) -> None:
    token = consul.service_token("billing")

    status, answer = register(consul, "payments", token)

    assert status == 403
    assert "lacks permission 'service:write' on \"payments\"" in str(answer)


def test_the_management_token_is_made_at_start(consul: Consul) -> None:
    assert consul.management_token
    status, _ = http_json(
        "GET", f"{consul.http_url}/v1/acl/tokens", headers={"X-Consul-Token": "not-a-token"}
    )
    assert status == 403
    consul.service_token("audit")
    tokens = consul.api("GET", "/v1/acl/tokens")
    policies = {policy["Name"] for token in tokens for policy in token.get("Policies", [])}
    assert {"agent", "service-audit"} <= policies
