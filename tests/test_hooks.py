"""Bad cookiecutter answers stop with one clear line and leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .rendering import run_cookiecutter_cli

BAD_ANSWERS = [
    ("service_name=Value-Architect", "is not a DNS label"),
    ("service_name=value_architect", "is not a DNS label"),
    ("service_name=-value", "is not a DNS label"),
    ("service_name=" + "a" * 64, "is not a DNS label"),
    ("package_name=json", "would clash with the Python module 'json'"),
    ("package_name=faststream", "would clash with the Python module 'faststream'"),
    ("package_name=consul", "would clash with the Python module 'consul'"),
    ("package_name=2fast", "is not a valid Python package name"),
    ("package_name=class", "is not a valid Python package name"),
    ("http_port=80", "must be a number from 1024 to 65535"),
    ("http_port=70000", "must be a number from 1024 to 65535"),
    ("http_port=eighty", "must be a number from 1024 to 65535"),
    ("consumes_topic=bad topic", "is not a legal Kafka topic name"),
    ("produces_topic=..", "is not a legal Kafka topic name"),
    ("dead_letter_topic=" + "t" * 250, "is not a legal Kafka topic name"),
    ("produces_topic=value/created", "is not a legal Kafka topic name"),
    ("consumes_topic=1st.requests", "must start with a letter"),
    ("produces_topic=value-model.requested", "must be three different topics"),
    ("topic_partitions=0", "must be a number from 1 to 1000"),
    ("api_resource=Value Models", "must be lowercase letters"),
    ("chassis_requirement=requests~=2.32", "is not a requirement for event-chassis"),
    ("chassis_requirement=event-chassis 1.1", "is not a requirement for event-chassis"),
    ("chassis_requirement=event-chassis @ ../chassis", "is not a requirement for event-chassis"),
    ("chassis_requirement=event-chassis[testing]~=1.1", "is not a requirement for event-chassis"),
]


@pytest.mark.parametrize(("answer", "message"), BAD_ANSWERS)
def test_bad_answer_is_rejected_cleanly(tmp_path: Path, answer: str, message: str) -> None:
    result = run_cookiecutter_cli(tmp_path, answer)

    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    # One line per problem; a bad service name also makes a bad derived package name.
    assert any(message in error for error in errors), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_several_bad_answers_are_all_reported(tmp_path: Path) -> None:
    result = run_cookiecutter_cli(tmp_path, "service_name=Bad_Name", "http_port=1")

    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 3  # the service name, the package name derived from it, the port
    assert list(tmp_path.iterdir()) == []


def test_good_answers_print_next_steps(tmp_path: Path) -> None:
    result = run_cookiecutter_cli(tmp_path, "service_name=order-intake")

    assert result.returncode == 0, result.stderr
    assert "Next steps" in result.stdout
    assert (tmp_path / "order-intake" / "src" / "order_intake" / "service.py").exists()


@pytest.mark.parametrize("answer", ["service_name=order-intake", "http_port=80"])
def test_the_hooks_leave_no_copy_in_the_temporary_folder(tmp_path: Path, answer: str) -> None:
    """cookiecutter runs each hook from a rendered copy in the temporary folder and leaves
    it there; the hooks remove theirs (each rendering had left two files in /tmp)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    result = run_cookiecutter_cli(tmp_path / "out", answer, env=env)

    assert (result.returncode == 0) == answer.startswith("service_name"), result.stderr
    assert list(temporary.iterdir()) == []
