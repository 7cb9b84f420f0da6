"""Dependencies and HTTP: the service keeps serving when Consul, Kafka or Jaeger is away.

A generated value-architect runs as its own process. Each test that takes a
dependency away starts its own server of that kind (ports are chosen before
the server starts, so the service can be pointed at a server that is not up
yet) and leaves the session's shared servers alone.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from platform_native import servers
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .conftest import Platform
from .rendering import render

pytestmark = pytest.mark.reliability

API = "/api/v1/value-models"


@dataclass
class Installed:
    info: ServiceInfo
    script: Path
    root: Path


@pytest.fixture(scope="module")
def architect(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("reliability-dependencies")
    info = ServiceInfo.read(render(root))
    return Installed(info, install(info.directory), root)


def own_topics(platform: Platform, name: str) -> dict[str, str]:
    prefix = f"dependencies-{name}-{uuid.uuid4().hex[:6]}"
    env = {
        "CONSUMES_TOPIC": f"{prefix}.requested",
        "PRODUCES_TOPIC": f"{prefix}.created",
        "DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "CONSUMER_GROUP": prefix,
    }
    platform.kafka.create_topics(
        [env["CONSUMES_TOPIC"], env["PRODUCES_TOPIC"], env["DEAD_LETTER_TOPIC"]]
    )
    return env


def start(architect: Installed, env: dict[str, str], name: str) -> ServiceProcess:
    return ServiceProcess(
        architect.info, architect.script, env, architect.root / f"{name}.log"
    ).start()


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


def wait_for(check: Any, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `check()` is truthy, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post(client: httpx.Client, url: str, i: int) -> int:
    body = {"company_name": f"company-{i}", "industry": "Reliability"}
    return client.post(f"{url}{API}", json=body).status_code


# -------------------------------------------------------------------- Consul


def test_consul_down_at_start_then_restarted(
    platform: Platform, architect: Installed, tmp_path: Path
) -> None:
    consul = servers.Consul(tmp_path / "consul")  # ports reserved, not started yet
    env = platform.service_env(CONSUL_HTTP_ADDR=consul.http_url, **own_topics(platform, "consul"))
    process = start(architect, env, "consul-down")
    catalog = f"{consul.http_url}/v1/catalog/service/{architect.info.name}"
    try:
        ready = f"{process.url}/health/ready"
        live = wait_for(lambda: (r := get(ready)) and r.status_code == 200, 60)
        time.sleep(2)  # Consul stays down a while; the service keeps retrying
        with httpx.Client(timeout=10) as client:
            accepted = post(client, process.url, 0)
        with servers.running(consul):
            registered_after = wait_for(lambda: (r := get(catalog)) and r.json(), 30)
            consul.restart()  # -dev keeps nothing: the registration is gone
            back_after = wait_for(lambda: (r := get(catalog)) and r.json(), 30)
    finally:
        process.terminate()
    passed = (
        live is not None
        and accepted == 202
        and registered_after is not None
        and registered_after <= 5
        and back_after is not None
    )
    report.record(
        "dependencies.consul_down",
        "Consul down at start: the service starts and serves, registers within 5 s of "
        "Consul coming up, and registers again after Consul restarts with no state",
        passed,
        served_while_consul_down=accepted == 202,
        seconds_to_register_after_consul_up=_round(registered_after),
        seconds_to_register_again_after_restart=_round(back_after),
    )
    assert passed, process.log_tail()


# --------------------------------------------------------------------- Kafka


def test_kafka_down_at_start(platform: Platform, architect: Installed, tmp_path: Path) -> None:
    kafka = servers.Kafka(tmp_path / "kafka")  # ports reserved, not started yet
    env = platform.service_env(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap, CONSUL_ENABLED="false")
    process = start(architect, env, "kafka-down")
    try:
        assert wait_for(lambda: get(f"{process.url}/health/live"), 60) is not None
        time.sleep(3)  # it keeps trying meanwhile
        not_ready = get(f"{process.url}/health/ready")
        alive = process.process is not None and process.process.poll() is None
        with servers.running(kafka):
            info = architect.info
            kafka.create_topics(list(info.topics), partitions=info.partitions)
            ready_after = wait_for(
                lambda: (r := get(f"{process.url}/health/ready")) and r.status_code == 200, 90
            )
    finally:
        process.terminate()
    reason = not_ready.json() if not_ready is not None else None
    passed = (
        not_ready is not None
        and not_ready.status_code == 503
        and bool(reason)
        and alive
        and ready_after is not None
    )
    report.record(
        "dependencies.kafka_down",
        "Kafka down at start: /health/ready says 503 with the reason, the process keeps "
        "trying, and is ready once Kafka is up",
        passed,
        ready_status_while_down=not_ready.status_code if not_ready else None,
        reason=json.dumps(reason),
        seconds_to_ready_after_kafka_up=_round(ready_after),
    )
    assert passed, process.log_tail()


# ---------------------------------------------------- Jaeger down, and HTTP


@pytest.fixture(scope="module")
def dark(platform: Platform, architect: Installed) -> Iterator[ServiceProcess]:
    """A service whose OTLP endpoint is a port nobody listens on."""
    [dead_port] = servers.free_ports(1)
    topics = own_topics(platform, "jaeger")
    env = platform.service_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead_port}",
        CONSUL_ENABLED="false",
        **topics,
    )
    process = start(architect, env, "jaeger-down")
    process.env.update(topics)
    try:
        ready = wait_for(
            lambda: (r := get(f"{process.url}/health/ready")) and r.status_code == 200, 90
        )
        assert ready is not None, process.log_tail()
        yield process
    finally:
        process.terminate()


def count_records(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> int:
    async def read() -> int:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            seen = 0
            deadline = time.monotonic() + timeout
            while seen < expected and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                seen += sum(len(batch) for batch in batches.values())
            return seen
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_jaeger_down_fails_nothing_and_memory_stays_flat(
    platform: Platform, dark: ServiceProcess
) -> None:
    warmup, load = 500, 3000
    with httpx.Client(timeout=10) as client:
        statuses = [post(client, dark.url, i) for i in range(warmup)]
        before = rss_mib(dark.pid)
        statuses += [post(client, dark.url, i) for i in range(warmup, warmup + load)]
    time.sleep(2)
    after = rss_mib(dark.pid)
    processed = count_records(platform.kafka.bootstrap, dark.env["PRODUCES_TOPIC"], warmup + load)
    failed = sum(status != 202 for status in statuses)
    growth = after - before
    passed = failed == 0 and processed == warmup + load and growth < 25
    report.record(
        "dependencies.jaeger_down",
        "Jaeger down: no request or message fails, and memory stays flat (bounded span queue)",
        passed,
        requests=warmup + load,
        failed_requests=failed,
        messages_processed=processed,
        rss_mib_after_warmup=round(before, 1),
        rss_mib_after_load=round(after, 1),
        rss_growth_mib=round(growth, 1),
    )
    assert passed, dark.log_tail()


def test_bad_http_input_gets_4xx_with_a_reason(dark: ServiceProcess) -> None:
    cases = {
        "not json": (b"{", "application/json"),
        "missing field": (b'{"company_name": "x"}', "application/json"),
        "wrong type": (b'{"company_name": 5, "industry": []}', "application/json"),
        "empty": (b"", "application/json"),
        "form body": (b"company_name=x", "application/x-www-form-urlencoded"),
    }
    results = {}
    with httpx.Client(timeout=10) as client:
        for name, (body, content_type) in cases.items():
            response = client.post(
                f"{dark.url}{API}", content=body, headers={"content-type": content_type}
            )
            results[name] = (response.status_code, response.json().get("detail"))
        oversized = client.post(f"{dark.url}{API}", content=b"x" * (2 * 1024 * 1024))
        unknown = client.get(f"{dark.url}/no/such/path")
    passed = (
        all(status == 422 and detail for status, detail in results.values())
        and oversized.status_code == 413
        and unknown.status_code == 404
    )
    report.record(
        "http.bad_input",
        "Bad bodies get 422 with a reason (never 500), oversized bodies 413, unknown paths 404",
        passed,
        statuses={name: status for name, (status, _) in results.items()},
        oversized=oversized.status_code,
        unknown_path=unknown.status_code,
    )
    assert passed, results


def test_schemathesis_finds_no_server_error(dark: ServiceProcess) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{dark.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "50",
        "--seed",
        "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    summary = [line for line in result.stdout.splitlines() if "passed" in line or "failed" in line]
    report.record(
        "http.schemathesis",
        "A schemathesis run against the service's own OpenAPI document finds no 500",
        result.returncode == 0,
        max_examples_per_operation=50,
        summary=summary[-1].strip(" =") if summary else "",
    )
    assert result.returncode == 0, result.stdout[-6000:]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
