"""The chassis' own suite, lint and types, in a fresh virtualenv with the newest versions
its ranges allow; its Kafka tests against the real Kafka the platform starts."""

from __future__ import annotations

import os
import venv
from pathlib import Path

import pytest

from .conftest import Platform
from .rendering import REPO, run

CHASSIS = REPO / "chassis"


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("chassis") / ".venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--upgrade", "--upgrade-strategy", "eager", "-e", f"{CHASSIS}[dev]"], CHASSIS)
    return python


def pytest_args(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def test_ruff(python: Path) -> None:
    run([str(python), "-m", "ruff", "check", "."], CHASSIS)
    run([str(python), "-m", "ruff", "format", "--check", "."], CHASSIS)


def test_mypy_strict(python: Path) -> None:
    run([str(python), "-m", "mypy", "--strict", "src", "tests"], CHASSIS)


def test_unit_tests_pass(python: Path) -> None:
    output = run(pytest_args(python), CHASSIS)

    assert " passed" in output
    assert "failed" not in output


@pytest.mark.infra
def test_kafka_and_consul_tests_pass_against_the_real_servers(
    python: Path, platform: Platform
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": platform.kafka.bootstrap,
        "CONSUL_HTTP_ADDR": f"http://{platform.consul.http_addr}",
    }
    output = run(pytest_args(python, "-m", "kafka or consul"), CHASSIS, env=env)

    assert " passed" in output
    assert "failed" not in output
