"""./deploy-all.sh --native, end to end: up, a request, a second up, status, down.

Runs the script exactly as a user does, with its state in a temporary
directory, and checks the result in the real Consul, Jaeger and Prometheus it
started (the request's trace in Jaeger, its logs in VictoriaLogs through the
collector). The services are a copy of services/ in which the team has edited
value-architect's handler, as teams do: the platform runs their code as it is.
value-architect keeps state (`database = "postgres"`): it gets its own database, with
short-lived credentials from OpenBao (its AppRole as 0600 files, nothing secret in its
environment), and `status` shows it with its outbox backlog.
The last test brings everything down and checks no process is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from platform_deploy.discovery import discover
from platform_native.processes import pid_alive
from platform_native.services import passing_instances

from . import jaeger
from .conftest import REPO
from .telemetry import ANSI, json_line_problems

pytestmark = pytest.mark.infra

SCRIPT = REPO / "deploy-all.sh"


TEAM_EDIT = "(checked by the team)"


def deploy(state_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PLATFORM_STATE_DIR": str(state_dir),
        "PLATFORM_SERVICES_DIR": str(state_dir / "services"),
    }
    result = subprocess.run(
        [str(SCRIPT), "--native", *args], env=env, capture_output=True, text=True, timeout=1800
    )
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def eventually(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return result


def recorded_pids(state_dir: Path) -> list[int]:
    """Every process deploy-all.sh says it started: the servers and the services."""
    infra = json.loads((state_dir / "infra" / "state.json").read_text())
    services = json.loads((state_dir / "services.json").read_text())
    return [int(s["pid"]) for s in infra["servers"].values()] + [
        int(s["pid"]) for s in services.values()
    ]


def services_edited_by_their_team(services: Path) -> None:
    """services/ as it is in this repository, with one edit to value-architect's handler."""
    shutil.copytree(REPO / "services", services, ignore=shutil.ignore_patterns(".venv"))
    handlers = services / "value-architect" / "src" / "value_architect" / "handlers.py"
    original = "        industry=event.industry,\n"
    assert original in handlers.read_text()
    edited = f'        industry=f"{{event.industry}} {TEAM_EDIT}",\n'
    handlers.write_text(handlers.read_text().replace(original, edited))


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("deploy")
    services_edited_by_their_team(state / "services")
    try:
        yield state
    finally:
        deploy(state, "down", check=False)  # also when a test failed half-way
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def first_up(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return deploy(state_dir, "up")


@pytest.fixture(scope="module")
def env(state_dir: Path, first_up: subprocess.CompletedProcess[str]) -> dict[str, str]:
    infra: dict[str, Any] = json.loads((state_dir / "infra" / "state.json").read_text())
    return dict(infra["env"])


def test_up_says_kong_is_validated_not_served(first_up: subprocess.CompletedProcess[str]) -> None:
    assert "Kong does not run natively" in first_up.stdout
    assert "snippets merged and validated" in first_up.stdout
    assert (REPO / "infrastructure" / "kong" / "kong.generated.yml").exists()


def test_every_service_is_passing_in_consul(state_dir: Path, env: dict[str, str]) -> None:
    names = [info.name for info in discover(state_dir / "services")]
    assert names, "no service under services/"
    for name in names:
        assert passing_instances(env["CONSUL_HTTP_ADDR"], name), f"{name} not passing"


@pytest.fixture(scope="module")
def request_trace_id(env: dict[str, str]) -> str:
    response = httpx.post(
        "http://127.0.0.1:8011/api/v1/value-models",
        json={"company_name": "Deploy Check", "industry": "Platform"},
        timeout=10,
    )
    assert response.status_code == 201, response.text  # saved, its event in the outbox
    trace_id: str = response.json()["trace_id"]
    return trace_id


def test_a_request_is_one_trace_in_jaeger(env: dict[str, str], request_trace_id: str) -> None:
    query_url = env["JAEGER_QUERY_URL"]
    wanted = {
        ("value-architect", "POST /api/v1/value-models"),
        ("value-architect", "send value-model.requested"),
        ("value-architect", "process value-model.requested"),
    }
    found = eventually(lambda: jaeger.trace(query_url, request_trace_id, wanted))
    assert found, (
        f"trace {request_trace_id} with {sorted(wanted)} not in Jaeger; "
        f"found: {jaeger.operations(jaeger.trace(query_url, request_trace_id))}"
    )


def test_up_prints_the_collector_and_the_log_store(
    first_up: subprocess.CompletedProcess[str], env: dict[str, str]
) -> None:
    assert f"OTLP (HTTP)  {env['OTEL_EXPORTER_OTLP_ENDPOINT']}" in first_up.stdout
    assert env["LOGS_QUERY_URL"] in first_up.stdout
    assert "Logs UI" in first_up.stdout


def test_a_requests_logs_are_in_the_log_store(env: dict[str, str], request_trace_id: str) -> None:
    """The LogsQL query the README shows, against the log store `up` printed."""

    def records() -> list[dict[str, Any]]:
        query = {"query": f'trace_id:"{request_trace_id}"'}
        response = httpx.get(env["LOGS_QUERY_URL"], params=query, timeout=10)
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    found = eventually(lambda: [r for r in records() if r["_msg"].startswith("Handling ")])
    assert found, f"no handler log of trace {request_trace_id}: {records()}"
    assert {r["service.name"] for r in found} == {"value-architect"}


def test_log_files_are_json_lines_without_colour(state_dir: Path, request_trace_id: str) -> None:
    """Every line of every service's log file is a JSON record; no log file has colours."""
    service_logs = sorted((state_dir / "logs").glob("*.log"))
    assert service_logs
    problems = [problem for path in service_logs for problem in json_line_problems(path)]
    assert not problems, "\n".join(problems[:20])
    server_logs = sorted((state_dir / "infra").glob("*/*.log"))  # each server's own log
    assert {path.stem for path in server_logs} >= {"otelcol", "victorialogs", "jaeger", "kafka"}
    coloured = [path.name for path in server_logs if ANSI.search(path.read_text(errors="replace"))]
    assert not coloured


def test_the_teams_edited_handler_is_what_runs(env: dict[str, str], request_trace_id: str) -> None:
    def created() -> list[Any]:
        return read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], "value-model.created")

    [result] = eventually(created)
    assert json.loads(result.value)["industry"] == f"Platform {TEAM_EDIT}"


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=2000)
            return [record for batch in batches.values() for record in batch]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_prometheus_scrapes_the_service(env: dict[str, str], request_trace_id: str) -> None:
    def up() -> list[Any]:
        response = httpx.get(
            f"{env['PROMETHEUS_URL']}/api/v1/query",
            params={"query": 'up{job="services",service="value-architect"} == 1'},
            timeout=5,
        )
        result: list[Any] = response.json()["data"]["result"]
        return result

    assert eventually(up), "Prometheus has no successful scrape of value-architect"


def test_alerts_are_wired_and_up_prints_the_alertmanager(
    first_up: subprocess.CompletedProcess[str], env: dict[str, str]
) -> None:
    """Prometheus loads the shipped rules and sends to the Alertmanager `up` printed."""
    url = re.escape(env["ALERTMANAGER_URL"])
    assert re.search(rf"^ +Alertmanager +{url}$", first_up.stdout, re.MULTILINE), first_up.stdout
    prometheus = env["PROMETHEUS_URL"]
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {"services-health", "services-messaging", "platform"} <= {g["name"] for g in groups}

    def alertmanagers() -> list[str]:
        found = httpx.get(f"{prometheus}/api/v1/alertmanagers", timeout=5).json()["data"]
        return [a["url"] for a in found["activeAlertmanagers"]]

    [active] = eventually(alertmanagers)
    assert active.startswith(env["ALERTMANAGER_URL"])


def test_no_service_has_a_secret_in_its_environment_and_openbao_issued_its_database_login(
    state_dir: Path, env: dict[str, str], first_up: subprocess.CompletedProcess[str]
) -> None:
    """Only OpenBao's address and the paths of the AppRole's 0600 files; the database's
    DSN without a password; the audit log shows the service taking its credentials."""
    assert re.search(r"^ +PostgreSQL +postgresql://127\.0\.0\.1:\d+ ", first_up.stdout, re.M)
    records = json.loads((state_dir / "services.json").read_text())
    for name, record in records.items():
        raw = Path(f"/proc/{record['pid']}/environ").read_bytes().decode().split("\0")
        environ = dict(v.split("=", 1) for v in raw if "=" in v)
        named = re.compile(r"(PASSWORD|TOKEN|SECRET|SECRET_ID|ROLE_ID)$")
        assert not [k for k, v in environ.items() if v and named.search(k)], name
        assert not [k for k, v in environ.items() if urlsplit(v).password], name
        for variable in ("VAULT_ROLE_ID_FILE", "VAULT_SECRET_ID_FILE"):
            assert stat.S_IMODE(Path(environ[variable]).stat().st_mode) == 0o600
    environ = dict(
        v.split("=", 1)
        for v in Path(f"/proc/{records['value-architect']['pid']}/environ")
        .read_bytes()
        .decode()
        .split("\0")
        if "=" in v
    )
    assert environ["VAULT_DATABASE_ROLE"] == "value-architect"
    assert urlsplit(environ["DATABASE_URL"]).path == "/value_architect"
    audit = (state_dir / "infra" / "openbao" / "audit.log").read_text().splitlines()
    issued = [
        entry
        for entry in map(json.loads, audit)
        if entry["type"] == "response"
        and entry["request"]["path"] == "database/creds/value-architect"
        and (entry.get("auth") or {}).get("metadata", {}).get("role_name") == "value-architect"
    ]
    assert issued


def test_second_up_changes_nothing(state_dir: Path, env: dict[str, str]) -> None:
    before = recorded_pids(state_dir)
    second = deploy(state_dir, "up")
    assert recorded_pids(state_dir) == before
    assert "already running" in second.stdout
    assert "0 created" in second.stdout
    assert "kong: unchanged" in second.stdout
    assert all(pid_alive(pid) for pid in before)


def test_status_reports_passing(state_dir: Path, env: dict[str, str]) -> None:
    status = deploy(state_dir, "status")
    assert "value-architect" in status.stdout
    assert "passing" in status.stdout
    assert re.search(r"^PostgreSQL 15\.\S* .*at 127\.0\.0\.1:\d+$", status.stdout, re.M)
    database = r"^  value-architect +database value_architect \(.+, outbox backlog \d+\)$"
    assert re.search(database, status.stdout, re.M), status.stdout
    assert f"(Alertmanager: {env['ALERTMANAGER_URL']})" in status.stdout  # the firing alerts


def test_down_leaves_no_process(state_dir: Path, env: dict[str, str]) -> None:
    pids = recorded_pids(state_dir)
    deploy(state_dir, "down")
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not (state_dir / "services.json").exists()
    assert not (state_dir / "infra" / "postgres" / "server").exists()  # nor its data
    status = deploy(state_dir, "status", check=False)
    assert status.returncode != 0
