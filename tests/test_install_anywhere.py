"""A service generated as the README says installs on a machine with only git and the
public package index: its chassis comes from the template's own repository.

The new user's steps, exactly: `cookiecutter <git URL> --no-input`, a fresh virtualenv,
`pip install -e '.[dev]'` with no find-links and no path to chassis/, then the service's
own checks. The template is this working tree's, committed to a scratch repository
(tests/template_repo.py), so the chassis installed is the one here.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .rendering import REPO, all_passed, render, run
from .template_repo import git, template_repository

PIP_LOCAL_SOURCES = ("PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT", "PIP_REQUIREMENT")


def requirements(service: Path) -> tuple[list[str], list[str]]:
    """The service's dependencies and its `dev` extra's event-chassis lines."""
    project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    dev = project["optional-dependencies"]["dev"]
    return project["dependencies"], [line for line in dev if line.startswith("event-chassis")]


def public_index_only(home: Path) -> dict[str, str]:
    """This machine's environment without any local source of packages, and a cookiecutter
    configuration of its own (its clones go to `home`, not to ~/.cookiecutters)."""
    config = home / "cookiecutterrc.yaml"
    config.write_text(
        f"cookiecutters_dir: {home / 'cookiecutters'}\nreplay_dir: {home / 'replay'}\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in PIP_LOCAL_SOURCES}
    return {**env, "COOKIECUTTER_CONFIG": str(config)}


def test_a_service_from_the_template_url_installs_and_passes_with_the_public_index(
    tmp_path: Path,
) -> None:
    template = template_repository(tmp_path / "template")
    commit = git(template, "rev-parse", "HEAD")
    env = public_index_only(tmp_path)
    cookiecutter = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)]
    run([*cookiecutter, f"git+file://localhost{template}"], tmp_path, env=env)
    service = tmp_path / "value-architect"

    source = f"git+file://localhost{template}@{commit}#subdirectory=chassis"
    assert requirements(service) == (
        [f"event-chassis[vault] @ {source}"],  # vault: secrets from OpenBao
        [f"event-chassis[testing] @ {source}"],
    )

    venv.create(service / ".venv", with_pip=True)
    python = str(service / ".venv" / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", "-e", ".[dev]"], service, env=env)

    output = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], service, env=env)
    assert all_passed(output), output[-3000:]
    run([python, "-m", "ruff", "check", "."], service, env=env)
    run([python, "-m", "ruff", "format", "--check", "."], service, env=env)
    run([python, "-m", "mypy", "--strict", "src", "tests"], service, env=env)
    read = "import importlib.metadata as m; print(m.distribution('event-chassis').read_text"
    origin = json.loads(run([python, "-c", f"{read}('direct_url.json'))"], service, env=env))
    assert origin["vcs_info"]["commit_id"] == commit  # pip built it from the template's commit


def test_a_folder_with_uncommitted_changes_gives_its_own_chassis_folder(tmp_path: Path) -> None:
    """cookiecutter renders a folder as it is, so the service takes that folder's chassis."""
    template = template_repository(tmp_path / "template")
    (template / "chassis" / "CHANGELOG.md").write_text("work in progress\n")
    env = public_index_only(tmp_path)
    cookiecutter = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)]

    output = run([*cookiecutter, str(template)], tmp_path, env=env)

    service = tmp_path / "value-architect"
    assert requirements(service) == (
        [f"event-chassis[vault] @ {(template / 'chassis').as_uri()}"],
        [f"event-chassis[testing] @ {(template / 'chassis').as_uri()}"],
    )
    assert "cruft link" in output  # no commit matches these files: nothing to update from
    assert not (service / ".cruft.json").exists()


@pytest.mark.parametrize(
    "answer",
    ["event-chassis~=1.1", "event-chassis>=1.1,<3", "event-chassis @ https://example.org/c.whl"],
)
def test_a_platform_index_answer_replaces_the_reference(tmp_path: Path, answer: str) -> None:
    service = render(tmp_path, chassis_requirement=answer)

    main = answer.replace("event-chassis", "event-chassis[vault]", 1)
    testing = answer.replace("event-chassis", "event-chassis[testing]", 1)
    assert requirements(service) == ([main], [testing])


def test_services_here_take_a_range_the_chassis_in_chassis_satisfies() -> None:
    """./deploy-all.sh builds them with the wheel of chassis/ as their index (.wheels)."""
    project = tomllib.loads((REPO / "chassis" / "pyproject.toml").read_text())["project"]
    for pyproject in sorted((REPO / "services").glob("*/pyproject.toml")):
        dependencies, testing = requirements(pyproject.parent)
        [chassis] = [Requirement(line) for line in dependencies if line.startswith("event-")]
        assert chassis.url is None, f"{pyproject}: {chassis} (a Docker build cannot reach it)"
        assert chassis.specifier.contains(project["version"]), f"{pyproject}: {chassis}"
        [test_chassis] = [Requirement(line) for line in testing]
        assert (test_chassis.name, test_chassis.extras) == ("event-chassis", {"testing"})
        assert test_chassis.specifier == chassis.specifier, f"{pyproject}: {test_chassis}"
