"""Render the template for every option and check what a new user gets.

For each combination: nothing unrendered is left, the code passes ruff and
mypy --strict, and the service's own test suite passes in its own virtualenv
with the newest dependency versions its ranges allow.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from .rendering import all_passed, install, mypy_env, render, run

COMBINATIONS: dict[str, dict[str, str]] = {
    # The defaults: value-architect with its HTTP API.
    "default": {},
    # A pure worker downstream of value-architect, on the newest Python.
    "worker": {
        "service_name": "value-auditor",
        "http_api": "no",
        "consumes_topic": "value-model.created",
        "produces_topic": "value-model.audited",
        "python_version": "3.13",
    },
    # State in PostgreSQL: the outbox and the inbox; its tests start a throwaway server.
    "stateful": {"database": "postgres"},
    # Every other answer changed.
    "custom": {
        "service_name": "billing-9",
        "package_name": "billing_core",
        "description": "Bills customers for placed orders.",
        "owner": "team-billing",
        "version": "2.3.4",
        "http_port": "9000",
        "api_resource": "invoices",
        "consumes_topic": "orders_v1.placed",
        "produces_topic": "Invoices.Issued",
        "dead_letter_topic": "billing.dlq",
        "consumer_group": "billing-workers",
        "topic_partitions": "6",
        "python_version": "3.12",
    },
}


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    answers = COMBINATIONS[request.param]
    return render(tmp_path_factory.mktemp(request.param), **answers)


@pytest.fixture(scope="module")
def python(service: Path) -> Path:
    return install(service)


def test_nothing_left_unrendered(service: Path) -> None:
    for path in service.rglob("*"):
        assert "{{" not in path.name and "{%" not in path.name, path
        if path.is_file() and ".venv" not in path.parts and path.name != ".cruft.json":
            text = path.read_text().replace("${{", "")  # GitHub Actions' own expressions
            helm = path.parent == service / "chart" / "templates"  # Helm's own templates
            for marker in ("cookiecutter",) if helm else ("{{", "{%", "{#", "cookiecutter"):
                assert marker not in text, f"{marker!r} left in {path}"


def test_metadata_matches_the_answers(service: Path) -> None:
    project = tomllib.loads((service / "pyproject.toml").read_text())
    platform = project["tool"]["event-platform"]
    catalog = list(yaml.safe_load_all((service / "catalog-info.yaml").read_text()))

    assert project["project"]["name"] == service.name
    assert len(platform["topics"]) == 3
    assert catalog[0]["metadata"]["name"] == service.name
    assert catalog[0]["spec"]["owner"] == project["project"]["authors"][0]["name"]
    dockerfile = (service / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert ":latest" not in dockerfile


def test_kong_snippet_only_with_an_api(service: Path) -> None:
    platform = tomllib.loads((service / "pyproject.toml").read_text())["tool"]["event-platform"]
    snippet = service / "kong" / f"{service.name}.yaml"
    if "kong_snippet" not in platform:
        assert not snippet.exists()
        assert not list(service.rglob("api.py"))
        return
    kong = yaml.safe_load(snippet.read_text())
    [kong_service] = kong["services"]
    assert kong["_format_version"] == "3.0"
    assert kong_service["host"] == f"{service.name}.service.consul"
    names = [kong_service["name"], *(route["name"] for route in kong_service["routes"])]
    names += [plugin["instance_name"] for plugin in kong_service["plugins"]]
    assert all(name.startswith(service.name) for name in names)


def test_ruff(service: Path, python: Path) -> None:
    run([str(python), "-m", "ruff", "check", "."], service)
    run([str(python), "-m", "ruff", "format", "--check", "."], service)


def test_mypy_strict(request: pytest.FixtureRequest, service: Path, python: Path) -> None:
    env = mypy_env(f"template-{request.node.callspec.params['service']}")
    run([str(python), "-m", "mypy", "--strict", "src", "tests"], service, env=env)


def test_own_test_suite_passes(service: Path, python: Path) -> None:
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service)

    assert all_passed(output), output[-3000:]


TEAM = "Team-owned"
PLATFORM = "Platform-owned"
NO_COMMENTS = {".cruft.json", "values.schema.json", "py.typed"}  # JSON, and an empty marker file


def owned_files(service: Path) -> dict[Path, str]:
    """Every generated file and whom its first line says it belongs to."""
    found = {}
    for path in sorted(service.rglob("*")):
        if path.is_dir() or ".venv" in path.parts or path.name in NO_COMMENTS:
            continue
        relative = path.relative_to(service)
        if any(
            part.endswith((".egg-info", "_cache")) or part == "__pycache__"
            for part in relative.parts
        ):
            continue
        first = path.read_text().splitlines()[0]
        found[relative] = TEAM if TEAM in first else PLATFORM if PLATFORM in first else first
    return found


def test_every_file_says_in_its_first_line_who_owns_it(service: Path) -> None:
    unowned = {
        str(path): first
        for path, first in owned_files(service).items()
        if first not in (TEAM, PLATFORM)
    }

    assert not unowned


def test_template_updates_skip_exactly_the_teams_files(service: Path) -> None:
    skip = tomllib.loads((service / "pyproject.toml").read_text())["tool"]["cruft"]["skip"]
    team = {path for path, owner in owned_files(service).items() if owner == TEAM}

    def skipped(path: Path) -> bool:
        return any(path == Path(entry) or Path(entry) in path.parents for entry in skip)

    assert {path for path in team if not skipped(path)} == set()
    platform = {path for path, owner in owned_files(service).items() if owner == PLATFORM}
    assert {path for path in platform if skipped(path)} == set()


def test_the_teams_own_code_is_small(service: Path) -> None:
    """The service's code is the team's: the plumbing is in the chassis."""
    team_code = [
        path
        for path, owner in owned_files(service).items()
        if owner == TEAM and path.parts[0] == "src"
    ]
    lines = sum(len((service / path).read_text().splitlines()) for path in team_code)
    # With a database the team also owns its models, its migration and a transactional
    # API: a bound of its own, so the stateless service's stays where it was.
    stateful = any((service / "src").rglob("models.py"))
    bound = 300 if stateful else 200

    assert 0 < lines < bound, f"{lines} lines in {[str(path) for path in team_code]}"
