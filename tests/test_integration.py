"""Two generated services against real Kafka, Consul, Jaeger and Prometheus.

value-architect (with its HTTP API) publishes value-model.requested, handles it
and publishes value-model.created; value-auditor (a pure worker) consumes that
and publishes value-model.audited. Each runs as its own process, as in
production. Every assertion reads what a real server returns.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from platform_native import servers
from platform_native.configs import replace_addresses
from platform_native.services import (
    ServiceInfo,
    ServiceProcess,
    passing_instances,
    wait_until_passing,
)

from . import jaeger
from .conftest import REPO, Platform
from .jaeger import get_json
from .kafka_clients import create_topics, read_until
from .polling import eventually
from .rendering import install_services, render

pytestmark = pytest.mark.infra

AUDITOR = {
    "service_name": "value-auditor",
    "http_api": "no",
    "http_port": "8012",
    "consumes_topic": "value-model.created",
    "produces_topic": "value-model.audited",
}


@pytest.fixture(scope="module")
def services(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    root = tmp_path_factory.mktemp("services")
    started: dict[str, ServiceProcess] = {}
    try:
        infos = [ServiceInfo.read(render(root, **answers)) for answers in ({}, AUDITOR)]
        scripts = install_services([info.directory for info in infos])
        for info, script in zip(infos, scripts, strict=True):
            create_topics(platform.kafka, info.topics, partitions=info.partitions)
            process = ServiceProcess(
                info,
                script,
                platform.service_env(),
                root / f"{info.name}.log",
            ).start()
            started[info.name] = process
        for name, process in started.items():
            wait_until_passing(platform.consul.http_addr, name, process=process)
        yield started
    finally:
        for process in started.values():
            process.terminate()


@pytest.fixture(scope="module")
def accepted(services: dict[str, ServiceProcess]) -> dict[str, str]:
    """One request to value-architect's API."""
    response = httpx.post(
        f"{services['value-architect'].url}/api/v1/value-models",
        json={"company_name": "Acme Integration", "industry": "Testing"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    body: dict[str, str] = response.json()
    return body


def answers_to(bootstrap: str, topic: str, event_id: str) -> list[dict[str, Any]]:
    """The events on `topic` made from `event_id` (their source_event_id). Modules that ran
    before on this worker's Kafka may have left records on the same topics."""

    def ours(records: list[Any]) -> list[dict[str, Any]]:
        events = [json.loads(record.value) for record in records]
        return [e for e in events if isinstance(e, dict) and e.get("source_event_id") == event_id]

    return ours(read_until(bootstrap, topic, lambda records: bool(ours(records)), 30))


def test_request_reaches_the_second_service_intact(
    platform: Platform, services: dict[str, ServiceProcess], accepted: dict[str, str]
) -> None:
    bootstrap = platform.kafka.bootstrap
    created = answers_to(bootstrap, "value-model.created", accepted["event_id"])
    audited = answers_to(
        bootstrap, "value-model.audited", created[0]["event_id"] if created else ""
    )
    found = {"created": len(created), "audited": len(audited)}
    tails = [process.log_tail(20) for process in services.values()]
    assert found == {"created": 1, "audited": 1}, f"records: {found}\n" + "\n".join(tails)

    assert audited[0]["company_name"] == "Acme Integration"
    assert audited[0]["industry"] == "Testing"
    dead = read_until(bootstrap, "value-architect.dead-letter", lambda _: False, 2)
    assert not [r for r in dead if accepted["event_id"].encode() in r.value]


def test_both_registered_with_passing_checks(
    platform: Platform, services: dict[str, ServiceProcess]
) -> None:
    for name, process in services.items():
        [instance] = passing_instances(platform.consul.http_addr, name)
        assert instance["Service"]["Port"] == process.http_port
        assert "prometheus" in instance["Service"]["Tags"]
        assert {check["Status"] for check in instance["Checks"]} == {"passing"}


def test_a_request_is_one_trace_through_both_services(
    platform: Platform, accepted: dict[str, str]
) -> None:
    """The trace id the API answers with holds every hop, parent to child across Kafka."""
    query_url = platform.jaeger.query_url
    post = ("value-architect", "POST /api/v1/value-models")
    send = ("value-architect", "send value-model.requested")
    handle = ("value-architect", "process value-model.requested")
    audit = ("value-auditor", "process value-model.created")
    found = eventually(lambda: jaeger.trace(query_url, accepted["trace_id"], {post, handle, audit}))
    assert found, (
        f"no complete trace {accepted['trace_id']} in Jaeger; "
        f"found: {jaeger.operations(jaeger.trace(query_url, accepted['trace_id']))}"
    )

    parents = jaeger.parents(found)
    assert parents[send] == {post}
    assert parents[handle] == {send}
    assert parents[audit] == {handle}


def test_prometheus_scrapes_both_through_consul(
    platform: Platform, services: dict[str, ServiceProcess], accepted: dict[str, str]
) -> None:
    prometheus = servers.Prometheus(
        platform.workdir / "prometheus", config_text=loopback_scrape_config(platform)
    )
    with servers.running(prometheus):

        def scraped() -> dict[str, float]:
            results = prometheus.query('up{job="services"}')
            return {r["metric"]["service"]: float(r["value"][1]) for r in results}

        up = eventually(lambda: (found := scraped()) and len(found) == 2 and found, 60)
        assert up == {"value-architect": 1.0, "value-auditor": 1.0}

        def received() -> dict[str, float]:
            results = prometheus.query("sum by (service) (messaging_consumed_messages_total)")
            return {r["metric"]["service"]: float(r["value"][1]) for r in results}

        counts = eventually(lambda: (found := received()) and len(found) == 2 and found, 30)
        assert counts, "Prometheus has no consumed-message counts of both services"
        assert counts["value-architect"] >= 1
        assert counts["value-auditor"] >= 1

        # Every service metric the shipped Grafana dashboard plots exists for real.
        wanted = dashboard_metrics()
        names = "|".join(sorted(wanted))
        results = prometheus.query(f'count by (__name__) ({{__name__=~"{names}",job="services"}})')
        assert {r["metric"]["__name__"] for r in results} == wanted


def dashboard_metrics() -> set[str]:
    """Metric names in the service dashboard that the services themselves expose.

    Left out: `up` (Prometheus's own), Kafka exporter's lag, the counters
    that only exist once a message has been retried or dead-lettered, and
    recording rules (`level:metric:op`, checked in tests/test_alerting.py).
    """
    path = REPO / "infrastructure" / "grafana" / "dashboards" / "service-overview.json"
    exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', path.read_text())
    names = {name for expr in exprs for name in re.findall(r"\b([a-z_:][a-z0-9_:]*)\{", expr)}
    return {
        name
        for name in names
        if name not in {"up", "messaging_dead_lettered_messages_total", "messaging_retries_total"}
        and not name.startswith("kafka_")
        and ":" not in name
    }


def loopback_scrape_config(platform: Platform) -> str:
    """The shipped prometheus.yml, pointed at the loopback Consul (other hosts unreachable)."""
    path = REPO / "infrastructure" / "prometheus" / "prometheus.yml"
    return replace_addresses(path.read_text(), {"consul:8500": platform.consul.http_addr})


def test_kong_snippets_merge_and_validate(
    services: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    snippets = [str(p.info.kong_snippet) for p in services.values() if p.info.kong_snippet]
    merged = tmp_path / "kong.yml"
    base = REPO / "infrastructure" / "kong" / "kong.yml"

    servers.run_deck("file", "merge", "-o", str(merged), str(base), *snippets)
    servers.deck_file_validate(merged)

    routes = [
        route["name"]
        for svc in yaml.safe_load(merged.read_text())["services"]
        for route in svc.get("routes", [])
    ]
    assert "value-architect-value-models" in routes


def test_sigterm_deregisters_within_two_seconds(
    platform: Platform, services: dict[str, ServiceProcess]
) -> None:
    """Last in this module: it stops the services."""
    for name, process in services.items():
        started = time.monotonic()
        process.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

        def gone(name: str = name) -> bool:
            return bool(get_json(f"{platform.consul.http_url}/v1/catalog/service/{name}") == [])

        assert eventually(gone, timeout=2.0, interval=0.05), f"{name} still in the catalog"
        elapsed = time.monotonic() - started
        assert elapsed <= 2.0
        # uvicorn re-raises SIGTERM once its graceful shutdown is done, so the
        # exit status says "ended by SIGTERM"; the log says the shutdown completed.
        assert process.terminate() in (0, -signal.SIGTERM), process.log_tail()
        assert "Application shutdown complete" in process.log_tail()
