"""Dependencies and HTTP: the service keeps serving when Consul, Kafka or Jaeger is away.

A generated value-architect runs as its own process, installed as a user would.
Each test that takes a dependency away starts its own server of that kind
(ports are chosen before the server starts, so the service can be pointed at
a server that is not up yet) and leaves the session's shared servers alone.
Every test records what it measured in docs/reliability.md before asserting.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from platform_native import servers
from platform_native.services import ServiceProcess

from . import report
from .conftest import Platform
from .kafka_clients import create_topics
from .rendering import Installed, render_and_install

pytestmark = pytest.mark.reliability

API = "/api/v1/value-models"
GRACE_SECONDS = 10.0  # SHUTDOWN_GRACE_SECONDS in Platform.service_env


@pytest.fixture(scope="module")
def architect(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return render_and_install(tmp_path_factory.mktemp("reliability-dependencies"))


def own_topics(platform: Platform, name: str) -> dict[str, str]:
    prefix = f"dependencies-{name}-{uuid.uuid4().hex[:6]}"
    env = {
        "CONSUMES_TOPIC": f"{prefix}.requested",
        "PRODUCES_TOPIC": f"{prefix}.created",
        "DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "CONSUMER_GROUP": prefix,
    }
    create_topics(
        platform.kafka, [env["CONSUMES_TOPIC"], env["PRODUCES_TOPIC"], env["DEAD_LETTER_TOPIC"]]
    )
    return env


def start(architect: Installed, env: dict[str, str], name: str) -> ServiceProcess:
    process = ServiceProcess(
        architect.info, architect.script, env, architect.root / f"{name}.log"
    ).start()
    process.env.update(env)
    return process


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None


def status_is(url: str, status: int) -> Callable[[], bool]:
    def check() -> bool:
        response = get(url)
        return response is not None and response.status_code == status

    return check


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `check()` is truthy, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    return None


def alive(process: ServiceProcess) -> bool:
    return process.process is not None and process.process.poll() is None


def log_count(process: ServiceProcess, text: str) -> int:
    return process.log_path.read_text(errors="replace").count(text)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def stop_and_time(process: ServiceProcess) -> tuple[float, int]:
    """SIGTERM, as an orchestrator sends it: seconds until the process is gone, exit code."""
    started = time.monotonic()
    code = process.terminate(timeout=60)
    return time.monotonic() - started, code


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class Load:
    """Sequential POSTs against the API: their statuses, latencies and the RSS on the way."""

    statuses: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def send(self, client: httpx.Client, url: str, count: int) -> None:
        for _ in range(count):
            i = len(self.statuses)
            body = {"company_name": f"company-{i}", "industry": "Reliability"}
            started = time.perf_counter()
            try:
                status = client.post(f"{url}{API}", json=body).status_code
            except httpx.HTTPError:
                status = 0
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.statuses.append(status)

    @property
    def failed(self) -> int:
        return sum(status != 202 for status in self.statuses)

    def percentile_ms(self, q: int) -> float:
        return round(statistics.quantiles(self.latencies_ms, n=100)[q - 1], 1)


def count_records(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> int:
    """Records in `topic`, read until `expected` are seen or `timeout` passes."""

    async def read() -> int:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            seen = 0
            deadline = time.monotonic() + timeout
            while (seen < expected or expected == 0) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                seen += sum(len(batch) for batch in batches.values())
            return seen
        finally:
            await consumer.stop()

    return asyncio.run(read())


# -------------------------------------------------------------------- Consul


def test_consul_down_at_start_then_restarted(
    platform: Platform, architect: Installed, tmp_path: Path
) -> None:
    consul = servers.Consul(tmp_path / "consul")  # ports reserved, not started yet
    env = platform.service_env(CONSUL_HTTP_ADDR=consul.http_url, **own_topics(platform, "consul"))
    process = start(architect, env, "consul-down")
    catalog = f"{consul.http_url}/v1/catalog/service/{architect.info.name}"
    passing = f"{consul.http_url}/v1/health/service/{architect.info.name}?passing=true"

    def in_catalog() -> bool:
        response = get(catalog)
        return response is not None and response.status_code == 200 and bool(response.json())

    def check_passing() -> bool:
        response = get(passing)
        return response is not None and response.status_code == 200 and bool(response.json())

    started = time.monotonic()
    try:
        live = wait_for(status_is(f"{process.url}/health/live", 200), 60)
        ready = wait_for(status_is(f"{process.url}/health/ready", 200), 60)
        with httpx.Client(timeout=10) as client:
            accepted = client.post(
                f"{process.url}{API}", json={"company_name": "c", "industry": "i"}
            ).status_code
        # Consul stays down long enough for the retry backoff to reach its cap.
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))
        consul_down_seconds = time.monotonic() - started
        attempts_while_down = log_count(process, "Consul unreachable")
        with servers.running(consul):
            registered_after = wait_for(in_catalog, 30)
            passing_after = wait_for(check_passing, 30)
            consul.restart()  # -dev keeps nothing: the registration is gone
            empty_after_restart = not in_catalog()
            back_after = wait_for(in_catalog, 30)
        still_alive = alive(process)
    finally:
        process.terminate()
    passed = (
        live is not None
        and ready is not None
        and accepted == 202
        and attempts_while_down > 0
        and registered_after is not None
        and registered_after <= 5
        and passing_after is not None
        and back_after is not None
        and back_after <= 10
        and still_alive
    )
    report.record(
        "dependencies.consul_down",
        "Consul down at start: the service starts and serves (/health/live 200, API 202), "
        "registers within 5 s of Consul coming up, and registers again after Consul restarts "
        "with no state",
        passed,
        live_while_consul_down=live is not None,
        api_status_while_consul_down=accepted,
        consul_down_seconds=round(consul_down_seconds, 1),
        registration_attempts_while_down=attempts_while_down,
        seconds_to_register_after_consul_up=_round(registered_after),
        seconds_until_check_passing=_round(passing_after),
        registration_lost_by_restart=empty_after_restart,
        seconds_to_register_again_after_restart=_round(back_after),
    )
    assert passed, process.log_tail()


# --------------------------------------------------------------------- Kafka


def test_kafka_down_at_start(platform: Platform, architect: Installed, tmp_path: Path) -> None:
    kafka = servers.Kafka(tmp_path / "kafka")  # ports reserved, not started yet
    env = platform.service_env(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap, CONSUL_ENABLED="false")
    process = start(architect, env, "kafka-down")
    body = {"company_name": "c", "industry": "i"}
    try:
        live = wait_for(status_is(f"{process.url}/health/live", 200), 60)
        time.sleep(5)  # it keeps trying meanwhile
        not_ready = get(f"{process.url}/health/ready")
        with httpx.Client(timeout=10) as client:
            api_while_down = client.post(f"{process.url}{API}", json=body)
        attempts_while_down = log_count(process, "Kafka unreachable")
        alive_while_down = alive(process)
        with servers.running(kafka):
            ready_after = wait_for(status_is(f"{process.url}/health/ready", 200), 90)
            info = architect.info
            create_topics(kafka, list(info.topics), partitions=info.partitions)
            with httpx.Client(timeout=10) as client:
                api_when_up = client.post(f"{process.url}{API}", json=body).status_code
    finally:
        process.terminate()
    reason = not_ready.json() if not_ready is not None else None
    passed = (
        live is not None
        and not_ready is not None
        and not_ready.status_code == 503
        and bool(reason and reason.get("reason"))
        and api_while_down.status_code == 503
        and attempts_while_down > 1
        and alive_while_down
        # connect_broker's backoff is capped at 5 s; joining the group takes a few more
        and ready_after is not None
        and ready_after <= 15
        and api_when_up == 202
    )
    report.record(
        "dependencies.kafka_down",
        "Kafka down at start: /health/ready says 503 with the reason, the API answers 503, "
        "the process keeps trying, and is ready once Kafka is up",
        passed,
        ready_status_while_down=not_ready.status_code if not_ready else None,
        reason=json.dumps(reason),
        api_status_while_down=api_while_down.status_code,
        connect_attempts_in_first_5s=attempts_while_down,
        seconds_to_ready_after_kafka_up=_round(ready_after),
        api_status_once_up=api_when_up,
    )
    assert passed, process.log_tail()


MAX_GROWTH_MIB_PER_1000 = 2.0  # see jaeger_passed
# Three spans a request (server, send, process): 3,000 spans fill the bounded queue (2,048)
# and the batch in a failing export (512) before memory is measured.
WARMUP = 1000
# These tests measure the span queue. With logs exported too, the log queue (one record
# per request) would still be filling in the second half; the collector and the log store
# down, with both queues: tests/test_telemetry_backends.py.
SPANS_ONLY = {"OTEL_LOGS_EXPORTER": "none"}
READINESS_BOUND_SECONDS = 10  # KAFKA_CHECK_INTERVAL_SECONDS=1 and a 1 s ping, with room


def test_readiness_follows_kafka_going_down_and_coming_back(
    platform: Platform, architect: Installed, tmp_path: Path
) -> None:
    """Mid-run, not only at start: Consul stops routing to an instance that lost Kafka."""
    kafka = servers.Kafka(tmp_path / "kafka")
    body = {"company_name": "c", "industry": "i"}
    with servers.running(kafka):
        info = architect.info
        create_topics(kafka, list(info.topics), partitions=info.partitions)
        env = platform.service_env(
            KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
            KAFKA_CHECK_INTERVAL_SECONDS="1",
            CONSUL_ENABLED="false",
        )
        process = start(architect, env, "kafka-mid-run")
        try:
            ready_at_start = wait_for(status_is(f"{process.url}/health/ready", 200), 90)
            kafka.kill()
            unready_after = wait_for(status_is(f"{process.url}/health/ready", 503), 60)
            reason = get(f"{process.url}/health/ready")
            with httpx.Client(timeout=10) as client:
                api_while_down = client.post(f"{process.url}{API}", json=body).status_code
            kafka.start()  # the same ports and data
            ready_after = wait_for(status_is(f"{process.url}/health/ready", 200), 90)
            with httpx.Client(timeout=10) as client:
                api_when_back = client.post(f"{process.url}{API}", json=body).status_code
        finally:
            process.terminate()
    passed = (
        ready_at_start is not None
        and unready_after is not None
        and unready_after <= READINESS_BOUND_SECONDS
        and api_while_down == 503
        and ready_after is not None
        and ready_after <= READINESS_BOUND_SECONDS
        and api_when_back == 202
    )
    report.record(
        "dependencies.kafka_lost_mid_run",
        f"Kafka killed mid-run: /health/ready answers 503 within {READINESS_BOUND_SECONDS} s "
        f"and the API 503; Kafka back: ready again within {READINESS_BOUND_SECONDS} s and "
        "the API accepts",
        passed,
        seconds_to_503=_round(unready_after),
        reason=(reason.json().get("reason") if reason is not None else None),
        api_status_while_down=api_while_down,
        seconds_to_200_after_kafka_back=_round(ready_after),
        api_status_once_back=api_when_back,
    )
    assert passed, process.log_tail()


# ------------------------------------------------------------------- Jaeger


def jaeger_load(
    platform: Platform, process: ServiceProcess, warmup: int, load: int
) -> dict[str, Any]:
    """Send `warmup` then `load` requests; what failed, what was processed, the RSS."""
    sent = Load()
    with httpx.Client(timeout=10) as client:
        sent.send(client, process.url, warmup)
        before = rss_mib(process.pid)
        sent.send(client, process.url, load // 2)
        middle = rss_mib(process.pid)
        sent.send(client, process.url, load - load // 2)
    time.sleep(2)
    after = rss_mib(process.pid)
    bootstrap = platform.kafka.bootstrap
    processed = count_records(bootstrap, process.env["PRODUCES_TOPIC"], warmup + load)
    dead_lettered = count_records(bootstrap, process.env["DEAD_LETTER_TOPIC"], 0, timeout=3)
    exporter_errors = log_count(process, "opentelemetry.exporter")
    # The SDK logs this (deduplicated) when the bounded span queue drops spans.
    queue_full = log_count(process, "Queue full, dropping Span")
    seconds, code = stop_and_time(process)
    return {
        "requests": warmup + load,
        "failed_requests": sent.failed,
        "messages_processed": processed,
        "dead_lettered": dead_lettered,
        "latency_p50_ms": sent.percentile_ms(50),
        "latency_p99_ms": sent.percentile_ms(99),
        "exporter_errors_logged": exporter_errors,
        "span_queue_full_logged": queue_full,
        "rss_mib_after_warmup": round(before, 1),
        "rss_mib_halfway": round(middle, 1),
        "rss_mib_after_load": round(after, 1),
        "rss_growth_mib": round(after - before, 1),
        "rss_growth_second_half_mib": round(after - middle, 1),
        "rss_growth_mib_per_1000_requests_second_half": round(
            (after - middle) / ((load - load // 2) / 1000), 2
        ),
        "sigterm_exit_seconds": round(seconds, 1),
        "exit_code": code,
    }


def jaeger_passed(figures: dict[str, Any]) -> bool:
    return (
        figures["failed_requests"] == 0
        and figures["messages_processed"] == figures["requests"]
        and figures["dead_lettered"] == 0
        # Flat: once warm, memory stops growing. The span queue is bounded at 2048 spans
        # (a few MiB, full within the warm-up with the collector away); a leak of even
        # 2 KiB per request would add 2 MiB per 1,000 requests in the second half.
        and figures["rss_growth_mib_per_1000_requests_second_half"] < MAX_GROWTH_MIB_PER_1000
        # drain (nothing in flight here) + the bounded span flush, well inside the grace
        and figures["sigterm_exit_seconds"] < GRACE_SECONDS
        # uvicorn re-raises the SIGTERM it handled once its shut-down is complete
        and figures["exit_code"] in {0, -signal.SIGTERM}
    )


@pytest.mark.solo
def test_jaeger_down_fails_nothing_and_memory_stays_flat(
    platform: Platform, architect: Installed
) -> None:
    """OTLP endpoint on a port nobody listens on: every export is refused at once."""
    [dead_port] = servers.free_ports(1)
    env = platform.service_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead_port}",
        CONSUL_ENABLED="false",
        **SPANS_ONLY,
        **own_topics(platform, "jaeger-refused"),
    )
    process = start(architect, env, "jaeger-refused")
    try:
        ready = wait_for(status_is(f"{process.url}/health/ready", 200), 90)
        assert ready is not None, process.log_tail()
        figures = jaeger_load(platform, process, warmup=WARMUP, load=4000)
    finally:
        process.kill()
    # The exporter's errors show the collector really was unreachable.
    passed = jaeger_passed(figures) and figures["exporter_errors_logged"] > 0
    report.record(
        "dependencies.jaeger_down",
        "Jaeger down (nothing listens on the OTLP port): no request or message fails, memory "
        "stays flat (bounded span queue), and SIGTERM still exits within the grace period",
        passed,
        **figures,
    )
    assert passed, (figures, process.log_tail(40))


@pytest.mark.solo
def test_jaeger_hung_fails_nothing_and_memory_stays_flat(
    platform: Platform, architect: Installed, tmp_path: Path
) -> None:
    """A real Jaeger frozen with SIGSTOP: connections are accepted and never answered."""
    jaeger = servers.Jaeger(tmp_path / "jaeger")
    with servers.running(jaeger):
        assert jaeger.pid is not None
        os.killpg(jaeger.pid, signal.SIGSTOP)
        env = platform.service_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http,
            CONSUL_ENABLED="false",
            **SPANS_ONLY,
            **own_topics(platform, "jaeger-hung"),
        )
        process = start(architect, env, "jaeger-hung")
        try:
            ready = wait_for(status_is(f"{process.url}/health/ready", 200), 90)
            assert ready is not None, process.log_tail()
            figures = jaeger_load(platform, process, warmup=WARMUP, load=4000)
        finally:
            process.kill()
            os.killpg(jaeger.pid, signal.SIGCONT)
    # An export blocks for its whole timeout (its error comes only after it), so the
    # queue must have overflowed meanwhile.
    passed = jaeger_passed(figures) and figures["span_queue_full_logged"] > 0
    report.record(
        "dependencies.jaeger_hung",
        "Jaeger frozen (SIGSTOP: the OTLP port accepts and never answers): no request or "
        "message fails, memory stays flat, and SIGTERM still exits within the grace period",
        passed,
        **figures,
    )
    assert passed, (figures, process.log_tail(40))


# --------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def serving(platform: Platform, architect: Installed) -> Iterator[ServiceProcess]:
    """A ready service for the HTTP tests."""
    env = platform.service_env(CONSUL_ENABLED="false", **own_topics(platform, "http"))
    process = start(architect, env, "http")
    try:
        ready = wait_for(status_is(f"{process.url}/health/ready", 200), 90)
        assert ready is not None, process.log_tail()
        yield process
    finally:
        process.terminate()


BAD_BODIES: dict[str, tuple[Any, str | None]] = {
    "not json": (b"{", "application/json"),
    "missing field": (b'{"company_name": "x"}', "application/json"),
    "wrong type": (b'{"company_name": 5, "industry": []}', "application/json"),
    "extra field": (b'{"company_name": "x", "industry": "y", "z": 1}', "application/json"),
    "too long": (json.dumps({"company_name": "x" * 5000, "industry": "y"}).encode(), None),
    "empty": (b"", "application/json"),
    "null": (b"null", "application/json"),
    "array": (b"[]", "application/json"),
    "NaN": (b'{"company_name": NaN, "industry": "y"}', "application/json"),
    "Infinity": (b'{"company_name": "x", "industry": -Infinity}', "application/json"),
    "lone surrogate": (b'{"company_name": "\\ud800", "industry": "y"}', "application/json"),
    "invalid utf-8": (b'{"company_name": "\xff\xfe", "industry": "y"}', "application/json"),
    "nested 30000 deep": (b"[" * 30_000, "application/json"),
    "5000-digit integer": (b'{"company_name": 1' + b"0" * 5000 + b"}", "application/json"),
    "form body": (b"company_name=x", "application/x-www-form-urlencoded"),
    "text/plain": (b'{"company_name": "x", "industry": "y"}', "text/plain"),
}


def test_bad_http_input_gets_4xx_with_a_reason(serving: ServiceProcess) -> None:
    url = f"{serving.url}{API}"
    results: dict[str, tuple[int, Any]] = {}
    with httpx.Client(timeout=10) as client:
        for name, (body, content_type) in BAD_BODIES.items():
            headers = {"content-type": content_type or "application/json"}
            response = client.post(url, content=body, headers=headers)
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            results[name] = (response.status_code, detail)
        limit = 64 * 1024  # MAX_REQUEST_BODY_BYTES default
        over_by_one = client.post(url, content=b"x" * (limit + 1))
        at_limit = client.post(url, content=b" " * limit, headers={"content-type": "text/plain"})
        chunked = client.post(url, content=iter([b"x" * 1024] * 1024))  # no Content-Length
        unknown_get = client.get(f"{serving.url}/no/such/path")
        unknown_post = client.post(f"{serving.url}/api/v1/no-such-resource", json={})
        still_works = client.post(url, json={"company_name": "x", "industry": "y"}).status_code
    server_errors = [name for name, (status, _) in results.items() if status >= 500]
    passed = (
        all(status == 422 and detail for status, detail in results.values())
        and over_by_one.status_code == 413
        and at_limit.status_code == 422
        and chunked.status_code == 413
        and unknown_get.status_code == 404
        and unknown_post.status_code == 404
        and still_works == 202
        and alive(serving)
    )
    report.record(
        "http.bad_input",
        "Bad bodies (incl. NaN, lone surrogates, invalid UTF-8, deep nesting) get 422 with a "
        "reason, never 500; oversized bodies 413 (also chunked, without Content-Length); "
        "unknown paths 404",
        passed,
        bad_bodies=len(results),
        statuses={name: status for name, (status, _) in results.items()},
        server_errors=server_errors,
        oversized_by_one_byte=over_by_one.status_code,
        body_at_limit=at_limit.status_code,
        oversized_chunked=chunked.status_code,
        unknown_path_get=unknown_get.status_code,
        unknown_path_post=unknown_post.status_code,
    )
    assert passed, {name: result for name, result in results.items() if result[0] != 422}


def test_schemathesis_finds_no_server_error(serving: ServiceProcess, tmp_path: Path) -> None:
    """Schemathesis (positive and negative cases) against the service's own /openapi.json."""
    report_path = tmp_path / "schemathesis.json"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{serving.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "50",
        "--seed",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    run = json.loads(report_path.read_text()) if report_path.exists() else {}
    cases = run.get("test_cases", {})
    failures = run.get("failures", [])
    passed = (
        result.returncode == 0
        and cases.get("generated", 0) > 0
        and cases.get("with_failures", 1) == 0
        and cases.get("errored", 1) == 0
        and not failures
    )
    report.record(
        "http.schemathesis",
        "A schemathesis run (positive and negative cases, max 50 examples per operation and "
        "phase) against the service's own OpenAPI document finds no 500",
        passed,
        operations_tested=run.get("operations", {}).get("tested"),
        cases_generated=cases.get("generated"),
        cases_with_failures=cases.get("with_failures"),
        cases_errored=cases.get("errored"),
        failures=[f"{f['code']} {f['title']}: {f['operations']}" for f in failures],
        seconds=_round(run.get("running_time")),
    )
    assert passed, result.stdout[-6000:]
