"""Follow one request through three services: its trace in Jaeger, its logs in the log store.

Three services rendered from the template, with names and topics of their own,
run as processes on the session's platform and send traces and logs to the
OpenTelemetry Collector only (it forwards traces to Jaeger and logs to
VictoriaLogs, the native log store):

    trace-intake    HTTP API: publishes trace-orders.received, handles it,
                    publishes trace-orders.checked
    trace-checker   worker: trace-orders.checked -> trace-orders.priced
    trace-archiver  worker: trace-orders.priced -> trace-orders.archived

trace-checker's team made its handler depend on something that times out
once for "retry-once" orders, as real dependencies do, so a retry happens.
Every assertion reads what Jaeger, VictoriaLogs or the log files hold.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from platform_native.services import ServiceInfo, ServiceProcess, wait_until_passing

from . import jaeger
from .conftest import Platform
from .kafka_clients import create_topics
from .polling import eventually
from .rendering import install_services, render
from .telemetry import (
    json_line_problems,
    logs_of_trace,
    services_of,
    span_events,
    span_ids,
)

pytestmark = pytest.mark.infra

INTAKE = {
    "service_name": "trace-intake",
    "http_port": "8031",
    "api_resource": "orders",
    "consumes_topic": "trace-orders.received",
    "produces_topic": "trace-orders.checked",
}
CHECKER = {
    "service_name": "trace-checker",
    "http_api": "no",
    "http_port": "8032",
    "consumes_topic": "trace-orders.checked",
    "produces_topic": "trace-orders.priced",
}
ARCHIVER = {
    "service_name": "trace-archiver",
    "http_api": "no",
    "http_port": "8033",
    "consumes_topic": "trace-orders.priced",
    "produces_topic": "trace-orders.archived",
}
# Appended to trace-checker's handlers.py: its pricing dependency times out once.
FLAKY_DEPENDENCY = '''

import functools as _functools

_timed_out: set[object] = set()


@_functools.wraps(handle)
async def handle(event):  # type: ignore[no-redef]
    """The team's handler, behind a dependency that times out once for "retry-once" orders."""
    if event.company_name.startswith("retry-once") and event.event_id not in _timed_out:
        _timed_out.add(event.event_id)
        raise TimeoutError("the pricing service timed out")
    return await handle.__wrapped__(event)
'''

POST = ("trace-intake", "POST /api/v1/orders")
SEND = ("trace-intake", "send trace-orders.received")
INTAKE_PROCESS = ("trace-intake", "process trace-orders.received")
CHECKER_PROCESS = ("trace-checker", "process trace-orders.checked")
ARCHIVER_PROCESS = ("trace-archiver", "process trace-orders.priced")
SERVICES = {"trace-intake", "trace-checker", "trace-archiver"}


@pytest.fixture(scope="module")
def chain(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    root = tmp_path_factory.mktemp("telemetry")
    started: dict[str, ServiceProcess] = {}
    try:
        infos = [ServiceInfo.read(render(root, **a)) for a in (INTAKE, CHECKER, ARCHIVER)]
        [checker] = [info.directory for info in infos if info.name == "trace-checker"]
        handlers = checker / "src" / "trace_checker" / "handlers.py"
        handlers.write_text(handlers.read_text() + FLAKY_DEPENDENCY)
        scripts = install_services([info.directory for info in infos])
        for info, script in zip(infos, scripts, strict=True):
            create_topics(platform.kafka, info.topics, partitions=info.partitions)
            started[info.name] = ServiceProcess(
                info,
                script,
                platform.service_env(LOG_LEVELS=f"{info.package}=DEBUG"),  # handlers' lines
                root / "logs" / f"{info.name}.log",
            ).start()
        for name, process in started.items():
            wait_until_passing(platform.consul.http_addr, name, process=process)
        yield started
    finally:
        for process in started.values():
            process.terminate()


def post_order(chain: dict[str, ServiceProcess], company: str) -> str:
    """One request to trace-intake; its trace id."""
    response = httpx.post(
        f"{chain['trace-intake'].url}/api/v1/orders",
        json={"company_name": company, "industry": "Telemetry"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    trace_id: str = response.json()["trace_id"]
    assert len(trace_id) == 32
    return trace_id


def whole_trace(platform: Platform, trace_id: str, *wanted: tuple[str, str]) -> dict[str, Any]:
    found = eventually(lambda: jaeger.trace(platform.jaeger.query_url, trace_id, set(wanted)))
    assert found, (
        f"trace {trace_id} incomplete in Jaeger after 30 s; it holds "
        f"{jaeger.operations(jaeger.trace(platform.jaeger.query_url, trace_id))}"
    )
    return found


def trace_logs(platform: Platform, trace_id: str, services: set[str]) -> list[dict[str, Any]]:
    records = eventually(
        lambda: (
            (found := logs_of_trace(platform.logs, trace_id))
            and services <= services_of(found)
            and found
        )
    )
    assert records, (
        f"log store: records of trace {trace_id} from "
        f"{services_of(logs_of_trace(platform.logs, trace_id))}, wanted {services}"
    )
    return list(records)


@pytest.fixture(scope="module")
def order_trace(chain: dict[str, ServiceProcess]) -> str:
    return post_order(chain, "Acme Telemetry")


def test_one_request_is_one_trace_across_both_kafka_hops(
    platform: Platform, order_trace: str
) -> None:
    found = whole_trace(
        platform, order_trace, POST, SEND, INTAKE_PROCESS, CHECKER_PROCESS, ARCHIVER_PROCESS
    )
    parents = jaeger.parents(found)
    assert parents[SEND] == {POST}
    assert parents[INTAKE_PROCESS] == {SEND}
    assert parents[CHECKER_PROCESS] == {INTAKE_PROCESS}  # first Kafka hop between services
    assert parents[ARCHIVER_PROCESS] == {CHECKER_PROCESS}  # second
    assert {service for service, _ in jaeger.operations(found)} == SERVICES


def test_the_requests_logs_from_all_three_services_are_in_the_log_store(
    platform: Platform, order_trace: str
) -> None:
    found = whole_trace(platform, order_trace, ARCHIVER_PROCESS)
    records = trace_logs(platform, order_trace, SERVICES)
    assert {record["trace_id"] for record in records} == {order_trace}
    # Each line points at the span it was logged in, in the same trace.
    assert {record["span_id"] for record in records} <= span_ids(found)
    handled = [r for r in records if r["_msg"].startswith("Handling ")]
    assert services_of(handled) == SERVICES
    assert all("Acme Telemetry" in r["_msg"] for r in handled)


def test_a_retry_is_on_its_span_and_in_the_log_store(
    platform: Platform, chain: dict[str, ServiceProcess]
) -> None:
    trace_id = post_order(chain, "retry-once Ltd")
    found = whole_trace(platform, trace_id, CHECKER_PROCESS, ARCHIVER_PROCESS)
    [retry] = [e for e in span_events(found, *CHECKER_PROCESS) if e["event"] == "retry"]
    assert (retry["attempt"], retry["error.type"]) == (1, "TimeoutError")
    # Retried, not dead-lettered: the request went on to the next service.
    assert "dead_lettered" not in {e["event"] for e in span_events(found, *CHECKER_PROCESS)}

    records = trace_logs(platform, trace_id, SERVICES)
    [warning] = [r for r in records if r["_msg"].startswith("Handler failed")]
    assert warning["service.name"] == "trace-checker"
    assert warning["severity_text"] == "WARN"
    assert "TimeoutError" in warning["_msg"] and "retry 1" in warning["_msg"]


def test_a_poison_message_is_dead_lettered_on_its_span_and_in_the_log_store(
    platform: Platform, chain: dict[str, ServiceProcess]
) -> None:
    """Not JSON, sent by a producer inside its own trace: the trace shows where it ended."""
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = [("traceparent", f"00-{trace_id}-{parent_id}-01".encode())]
    asyncio.run(produce(platform.kafka.bootstrap, "trace-orders.checked", b"{not json", headers))

    found = whole_trace(platform, trace_id, CHECKER_PROCESS)
    [span] = found["spans"]
    assert span["references"][0]["spanID"] == parent_id  # the producer's span is its parent
    [dead] = span_events(found, *CHECKER_PROCESS)
    assert dead["event"] == "dead_lettered"
    assert (dead["error.type"], dead["attempts"]) == ("ValidationError", 1)
    tags = {tag["key"]: tag["value"] for tag in span["tags"]}
    assert tags["otel.status_code"] == "ERROR"
    assert tags["error.type"] == "ValidationError"

    [record] = trace_logs(platform, trace_id, {"trace-checker"})
    assert record["_msg"].startswith("Dead-lettered trace-orders.checked[")
    assert (record["error_type"], record["attempts"]) == ("ValidationError", "1")
    assert record["span_id"] == span["spanID"]


async def produce(bootstrap: str, topic: str, value: bytes, headers: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"poison", headers=headers)
    finally:
        await producer.stop()


def test_every_log_line_is_json_without_colour(
    chain: dict[str, ServiceProcess], order_trace: str
) -> None:
    """The services' log files: FastStream's, uvicorn's and the team's lines alike."""
    problems = []
    loggers: set[str] = set()
    for process in chain.values():
        problems += json_line_problems(process.log_path)
        text = process.log_path.read_text()
        loggers |= {json.loads(line).get("logger", "") for line in text.splitlines()}
    assert not problems, "\n".join(problems[:20])
    # The file holds lines of every kind of logger, all in the same format.
    assert {"uvicorn.error", "trace_intake.handlers", "trace_checker.handlers"} <= loggers
    assert any(name.startswith("faststream") for name in loggers), loggers


def test_collector_and_log_store_run_the_shipped_config_on_loopback(platform: Platform) -> None:
    from platform_native import configs
    from platform_native.processes import listening_sockets

    collector = platform.collector
    assert collector.pid is not None and platform.logs.pid is not None
    args = Path(f"/proc/{collector.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    assert args[1:] == [
        f"--config=file:{configs.OTELCOL_CONFIG}",
        f"--config=file:{collector.overlay_path}",
    ]
    overlay = json.loads(collector.overlay_path.read_text())
    assert configs.overlay_violations(overlay) == []
    assert "0.0.0.0" not in json.dumps(overlay)
    sockets = listening_sockets([collector.pid, platform.logs.pid])
    assert {pid for *_, pid in sockets} == {collector.pid, platform.logs.pid}
    assert {ip for _, ip, _, _ in sockets} <= {"127.0.0.1", "::ffff:127.0.0.1"}, sockets
