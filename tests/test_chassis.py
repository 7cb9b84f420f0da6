"""The chassis' own suite, lint and types, in a fresh virtualenv with the newest versions
its ranges allow; its Kafka tests against the real Kafka the platform starts, and its
delivery tests (chassis/tests/test_delivery.py) as rows of the reliability report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from platform_native import installer

from . import report
from .conftest import Platform
from .rendering import REPO, all_passed, mypy_env, run

CHASSIS = REPO / "chassis"


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = installer.create_venv(tmp_path_factory.mktemp("chassis") / ".venv")
    installer.install(python, "-e", f"{CHASSIS}[dev]", upgrade=True)
    return python


def pytest_args(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def test_ruff(python: Path) -> None:
    run([str(python), "-m", "ruff", "check", "."], CHASSIS)
    run([str(python), "-m", "ruff", "format", "--check", "."], CHASSIS)


def test_mypy_strict(python: Path) -> None:
    run([str(python), "-m", "mypy", "--strict", "src", "tests"], CHASSIS, env=mypy_env("chassis"))


def test_unit_tests_pass(python: Path) -> None:
    output = run(pytest_args(python), CHASSIS)

    assert all_passed(output), output[-3000:]


@pytest.mark.infra
def test_kafka_and_consul_tests_pass_against_the_real_servers(
    python: Path, platform: Platform
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": platform.kafka.bootstrap,
        "CONSUL_HTTP_ADDR": f"http://{platform.consul.http_addr}",
    }
    # The delivery tests run once, below, as rows of the reliability report.
    args = pytest_args(python, "-m", "kafka or consul", "--ignore", "tests/test_delivery.py")
    output = run(args, CHASSIS, env=env)

    assert all_passed(output), output[-3000:]


@pytest.mark.reliability
def test_no_failure_path_of_the_batch_consumer_loses_a_message(
    python: Path, platform: Platform, tmp_path: Path
) -> None:
    """One consumer on three partitions, a fault in each case; counted by record name."""
    figures = tmp_path / "delivery.jsonl"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": platform.kafka.bootstrap,
        "DELIVERY_REPORT": str(figures),
    }
    try:
        output = run(pytest_args(python, "-m", "kafka", "tests/test_delivery.py"), CHASSIS, env=env)
    finally:
        cases = (
            [json.loads(line) for line in figures.read_text().splitlines()]
            if figures.exists()
            else []
        )
        for case in cases:
            name = case.pop("case")
            claim = f"{name}: nothing lost, duplicates only from the replay"
            report.record(f"delivery: {name}", claim, case["lost"] == 0, **case)

    assert all_passed(output), output[-3000:]
    assert len(cases) == 8
