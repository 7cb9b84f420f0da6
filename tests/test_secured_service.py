"""A generated service against the secured servers, configured by its documented settings.

Kafka: only a SASL_SSL listener is given to the service (SCRAM-SHA-512, the platform's
CA); Consul: ACLs on, default deny, the service's own token. The service is the
rendered template on the chassis, run as its own process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from platform_native.probes import http_json
from platform_native.servers import Consul, Kafka, running
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .kafka_clients import create_topics, read_until
from .rendering import render, wheelhouse

pytestmark = pytest.mark.reliability

API = "/api/v1/value-models"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kafka, Consul]]:
    root = tmp_path_factory.mktemp("secured-service")
    kafka = Kafka(root / "kafka", secured=True)
    consul = Consul(root / "consul", acl=True)
    with running(kafka, consul):
        yield kafka, consul


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServiceInfo, Path, Path]:
    root = tmp_path_factory.mktemp("secured-app")
    info = ServiceInfo.read(render(root))
    return info, install(info.directory, wheels=wheelhouse()), root


def kafka_client(kafka: Kafka) -> dict[str, Any]:
    """The platform's own SCRAM user, for producing requests and reading results."""
    [(user, password)] = list(kafka.users.items())[:1]
    return {
        "bootstrap_servers": kafka.secure_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_context": create_ssl_context(cafile=str(kafka.ca_file)),
    }


def topics(kafka: Kafka, name: str) -> dict[str, str]:
    prefix = f"secured-{name}-{secrets.token_hex(3)}"
    env = {
        "CONSUMES_TOPIC": f"{prefix}.requested",
        "PRODUCES_TOPIC": f"{prefix}.created",
        "DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "CONSUMER_GROUP": prefix,
    }
    create_topics(kafka, [env["CONSUMES_TOPIC"], env["PRODUCES_TOPIC"], env["DEAD_LETTER_TOPIC"]])
    return env


def start(
    service: tuple[ServiceInfo, Path, Path],
    kafka: Kafka,
    consul: Consul,
    **env: str,
) -> ServiceProcess:
    """The service with the settings its README documents for a secured platform.

    `CONSUL_HTTP_TOKEN_FILE` in `env`: the Consul token is in that file, and not in the
    environment at all; so is the Kafka password with `KAFKA_SASL_PASSWORD_FILE`.
    """
    info, script, root = service
    user = f"svc-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    kafka.add_user(user, password)
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.secure_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(kafka.ca_file),
        "CONSUL_HTTP_ADDR": consul.http_url,
        "CONSUL_HTTP_TOKEN": consul.service_token(info.name),
        "CONSUL_CHECK_INTERVAL": "1s",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "LOG_FORMAT": "json",
        "KAFKA_CHECK_INTERVAL_SECONDS": "1",
        **env,
    }
    if "CONSUL_HTTP_TOKEN_FILE" in env:
        del settings["CONSUL_HTTP_TOKEN"]
    if "KAFKA_SASL_PASSWORD_FILE" in env:
        write_secret(Path(env["KAFKA_SASL_PASSWORD_FILE"]), settings.pop("KAFKA_SASL_PASSWORD"))
    name = env.get("CONSUMER_GROUP", "secured")
    process = ServiceProcess(info, script, settings, root / f"{name}-{user}.log").start()
    process.env.update(settings)
    return process


REGISTERED_READY = "in Consul (ready)"  # what the chassis logs once registered as ready


def write_secret(path: Path, value: str) -> None:
    """Replace the file at once, as Kubernetes and Docker do."""
    written = path.with_name(f"{path.name}.new")
    written.write_text(value)
    written.chmod(0o600)
    written.replace(path)


def until(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.25)
    return result


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


def unready_because(process: ServiceProcess, cause: str) -> str:
    """The reason /health/ready gives, once it names `cause`."""
    response = get(f"{process.url}/health/ready")
    if response is None or response.status_code != 503:
        return ""
    reason = str(response.json()["reason"])
    return reason if cause in reason else ""


def passing(consul: Consul, name: str) -> list[Any]:
    headers = {"X-Consul-Token": consul.management_token or ""}
    url = f"{consul.http_url}/v1/health/service/{name}?passing=true"
    _, answer = http_json("GET", url, headers=headers)
    return list(answer or [])


def read(kafka: Kafka, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
    client = kafka_client(kafka)
    bootstrap = client.pop("bootstrap_servers")
    return read_until(bootstrap, topic, lambda records: len(records) >= count, timeout, **client)


def produce(kafka: Kafka, topic: str, count: int, prefix: str = "waiting") -> list[str]:
    async def send() -> list[str]:
        producer = AIOKafkaProducer(acks="all", **kafka_client(kafka))
        await producer.start()
        try:
            names = [f"{prefix}-{i}" for i in range(count)]
            for name in names:
                body = json.dumps({"company_name": name, "industry": "Security"}).encode()
                await producer.send(topic, body, key=name.encode())
            await producer.flush()
            return names
        finally:
            await producer.stop()

    return asyncio.run(send())


def test_a_service_runs_over_sasl_ssl_and_registers_with_its_acl_token(
    secured: tuple[Kafka, Consul], service: tuple[ServiceInfo, Path, Path]
) -> None:
    kafka, consul = secured
    env = topics(kafka, "works")
    process = start(service, kafka, consul, **env)
    try:
        ready = until(lambda: (r := get(f"{process.url}/health/ready")) and r.status_code == 200)
        assert ready, process.log_tail()
        registered = until(lambda: passing(consul, service[0].name))
        accepted = [
            httpx.post(f"{process.url}{API}", json={"company_name": f"tls-{i}", "industry": "x"})
            for i in range(5)
        ]
        results = read(kafka, env["PRODUCES_TOPIC"], 5)
    finally:
        process.terminate()
    passed = (
        bool(registered)
        and all(response.status_code == 202 for response in accepted)
        and len(results) == 5
    )
    report.record(
        "security.kafka_sasl_ssl_and_consul_acl",
        "With only a SASL_SSL (SCRAM-SHA-512) listener and Consul ACLs (default deny), the "
        "service configured by its documented settings produces, consumes and registers",
        passed,
        requests_accepted=sum(response.status_code == 202 for response in accepted),
        results_read=len(results),
        passing_in_consul=len(registered or []),
    )
    assert passed, process.log_tail()


def test_a_wrong_kafka_password_is_a_clear_error_and_loses_nothing(
    secured: tuple[Kafka, Consul], service: tuple[ServiceInfo, Path, Path]
) -> None:
    kafka, consul = secured
    env = topics(kafka, "wrong-password")
    waiting = produce(kafka, env["CONSUMES_TOPIC"], 20)
    wrong = start(service, kafka, consul, **env, KAFKA_SASL_PASSWORD="not-the-password")
    try:
        reason = until(lambda: unready_because(wrong, "Kafka unreachable")) or ""
        refused = httpx.post(f"{wrong.url}{API}", json={"company_name": "x", "industry": "y"})
        time.sleep(3)  # long enough to have consumed, had it been able to
        log = wrong.log_path.read_text(errors="replace")
    finally:
        wrong.terminate()
    consumed_meanwhile = len(read(kafka, env["PRODUCES_TOPIC"], 1, timeout=3))
    right = start(service, kafka, consul, **env)
    try:
        results = read(kafka, env["PRODUCES_TOPIC"], len(waiting))
    finally:
        right.terminate()
    handled = {json.loads(record.value)["company_name"] for record in results}
    passed = (
        "Kafka unreachable" in reason
        and "SaslAuthenticationFailed" in log
        and refused.status_code == 503
        and consumed_meanwhile == 0
        and handled == set(waiting)
    )
    report.record(
        "security.kafka_wrong_password",
        "A wrong SASL password: not ready, the reason says Kafka is unreachable, the log says "
        "SaslAuthenticationFailed, the API answers 503, and no message is lost: with the right "
        "password every waiting request is handled",
        passed,
        reason=reason[:120],
        api_status=refused.status_code,
        waiting=len(waiting),
        handled_after_fix=len(handled),
    )
    assert passed, (reason, log[-3000:])


def test_without_a_consul_token_the_service_says_why_it_is_not_registered(
    secured: tuple[Kafka, Consul], service: tuple[ServiceInfo, Path, Path]
) -> None:
    kafka, consul = secured
    env = topics(kafka, "no-token")
    process = start(service, kafka, consul, **env, CONSUL_HTTP_TOKEN="")
    try:
        said = until(lambda: "CONSUL_HTTP_TOKEN is missing" in process.log_tail(200), 30)
        live = get(f"{process.url}/health/live")
        registered = passing(consul, service[0].name)
        catalog = http_json(
            "GET",
            f"{consul.http_url}/v1/agent/services",
            headers={"X-Consul-Token": consul.management_token or ""},
        )[1]
    finally:
        process.terminate()
    mine = [
        s
        for s in (catalog or {}).values()
        if s.get("ID", "").endswith(process.env["CONSUMER_GROUP"])
    ]
    passed = bool(said) and live is not None and live.status_code == 200 and not mine
    report.record(
        "security.consul_acl_without_token",
        "Without a Consul token under default deny the service is refused, logs that the "
        "token is missing or lacks service:write, and keeps serving",
        passed,
        registered_instances=len(registered),
    )
    assert passed, process.log_tail()


def instances(consul: Consul, instance: str) -> list[str]:
    """The IDs of the services registered in Consul's agent that name `instance`."""
    url = f"{consul.http_url}/v1/agent/services"
    headers = {"X-Consul-Token": consul.management_token or ""}
    _, catalog = http_json("GET", url, headers=headers)
    return [key for key in (catalog or {}) if instance in key]


def revoke(consul: Consul, token: str) -> None:
    accessor = consul.api("GET", "/v1/acl/token/self", token=token)["AccessorID"]
    consul.api("DELETE", f"/v1/acl/token/{accessor}")


def test_a_rotated_consul_token_file_is_read_again(
    secured: tuple[Kafka, Consul], service: tuple[ServiceInfo, Path, Path], tmp_path: Path
) -> None:
    """The token file is replaced and the old token revoked, as a rotation does: the
    service goes on with the new token, and on SIGTERM it deregisters with it."""
    kafka, consul = secured
    name = service[0].name
    env = topics(kafka, "rotated-token")
    instance = env["CONSUMER_GROUP"]
    token_file = tmp_path / "consul_http_token"
    first = consul.service_token(name)
    token_file.write_text(first)
    token_file.chmod(0o600)
    process = start(
        service,
        kafka,
        consul,
        **env,
        CONSUL_HTTP_TOKEN_FILE=str(token_file),
        SERVICE_INSTANCE_ID=instance,
    )
    try:
        registered = until(lambda: instances(consul, instance), 60)
        replacement = tmp_path / "consul_http_token.new"
        replacement.write_text(consul.service_token(name))
        replacement.replace(token_file)
        revoke(consul, first)
        reread = until(lambda: "Consul token read again" in process.log_tail(200), 30)
        time.sleep(6)  # one more registration check, now with the new token
    finally:
        process.terminate()
    log = process.log_path.read_text(errors="replace")
    after_stop = instances(consul, instance)
    passed = bool(registered) and bool(reread) and not after_stop and "ACL not found" not in log
    report.record(
        "security.consul_token_file_rotated",
        "The Consul token file replaced and the old token revoked: the service reads the new "
        "one, goes on checking its registration with it, and deregisters with it on SIGTERM",
        passed,
        registered=len(registered or []),
        still_registered_after_sigterm=len(after_stop),
    )
    assert passed, (after_stop, log[-3000:])


def start_reading_a_password_file(
    secured: tuple[Kafka, Consul],
    service: tuple[ServiceInfo, Path, Path],
    tmp_path: Path,
    name: str,
) -> tuple[dict[str, str], Path, ServiceProcess]:
    """The service on topics of its own, its Kafka password in a file it watches; ready."""
    kafka, consul = secured
    env = topics(kafka, name)
    password_file = tmp_path / "kafka_sasl_password"
    process = start(service, kafka, consul, **env, KAFKA_SASL_PASSWORD_FILE=str(password_file))
    if not until(lambda: REGISTERED_READY in process.log_tail(200)):
        process.terminate()
        raise AssertionError(process.log_tail())
    return env, password_file, process


def test_a_new_kafka_password_file_restarts_the_service_in_place_and_loses_nothing(
    secured: tuple[Kafka, Consul], service: tuple[ServiceInfo, Path, Path], tmp_path: Path
) -> None:
    """Kafka's SCRAM password for the service is changed, then its file rewritten, as a
    rotation does. The old password no longer opens a connection: the service stops as on
    SIGTERM and starts again in the same process with the new one, and every request
    waiting before, during and after the restart is handled."""
    kafka, _ = secured
    env, password_file, process = start_reading_a_password_file(
        secured, service, tmp_path, "rotated-password"
    )
    try:
        before = produce(kafka, env["CONSUMES_TOPIC"], 20, "before")
        kafka.add_user(process.env["KAFKA_SASL_USERNAME"], secrets.token_urlsafe(16))
        write_secret(password_file, kafka.users[process.env["KAFKA_SASL_USERNAME"]])
        stopping = until(lambda: "holds a new password" in process.log_tail(200), 30)
        during = produce(kafka, env["CONSUMES_TOPIC"], 20, "during")
        started_again = until(lambda: process.log_tail(400).count(REGISTERED_READY) >= 2, 90)
        after = produce(kafka, env["CONSUMES_TOPIC"], 20, "after")
        results = read(kafka, env["PRODUCES_TOPIC"], 60, timeout=90)
        same_process = process.process is not None and process.process.poll() is None
    finally:
        process.terminate()
    log = process.log_path.read_text(errors="replace")
    handled = [json.loads(record.value)["company_name"] for record in results]
    sent = before + during + after
    passed = (
        bool(stopping)
        and bool(started_again)
        and same_process
        and set(handled) == set(sent)
        and "SaslAuthenticationFailed" not in log
    )
    report.record(
        "security.kafka_password_file_rotated",
        "The Kafka SCRAM password changed and its file rewritten: the service restarts in "
        "place (the same process) with the new password; no request waiting before, during "
        "or after is lost",
        passed,
        sent=len(sent),
        handled=len(set(handled)),
        duplicates=len(handled) - len(set(handled)),
    )
    assert passed, (stopping, started_again, same_process, len(set(handled)), log[-3000:])


def test_a_sigterm_while_stopping_for_a_new_password_stops_the_service_for_good(
    secured: tuple[Kafka, Consul], service: tuple[ServiceInfo, Path, Path], tmp_path: Path
) -> None:
    """Told to stop while it stops to take a new Kafka password, the service exits and
    does not start again in place: uvicorn raises the signal it caught again once its
    shut-down is done, which ends the process before the chassis would start again."""
    _, password_file, process = start_reading_a_password_file(
        secured, service, tmp_path, "stopped-while-restarting"
    )
    try:
        write_secret(password_file, secrets.token_urlsafe(16))
        assert until(lambda: "holds a new password" in process.log_tail(200), 30)
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        exit_code = process.process.wait(30)
        log = process.log_path.read_text(errors="replace")
    finally:
        process.terminate()
    assert log.count(REGISTERED_READY) == 1, log[-3000:]
    assert exit_code in {0, -signal.SIGTERM}, log[-3000:]
