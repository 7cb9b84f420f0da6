"""Services keep up with the platform: template changes by `cruft update`, plumbing by a
chassis version bump, and in both cases the team's own edits survive.

The template is taken from this working tree (committed or not) into a scratch git
repository, so what is tested is what is here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .rendering import REPO, install, run

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
CRUFT = [sys.executable, "-m", "cruft"]


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return result.stdout.strip()


def commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "--all")
    git(cwd, "commit", "--quiet", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """This working tree's template files in a fresh git repository, as commit A."""
    files = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    root = tmp_path / "template"
    for name in files:
        source = REPO / name
        if name.startswith(("services/", "chassis/", "bench/", "docs/")) or not source.is_file():
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / name)
    git(root, "init", "--quiet", "--initial-branch=main")
    commit_all(root, "template A")
    return root


def create(template: Path, output: Path) -> Path:
    """`cruft create`, then the service becomes its team's git repository."""
    output.mkdir(parents=True, exist_ok=True)
    run([*CRUFT, "create", str(template), "--no-input", "--output-dir", str(output)], output)
    service = output / "value-architect"
    git(service, "init", "--quiet", "--initial-branch=main")
    commit_all(service, "Generated")
    return service


def edit_as_a_team_would(service: Path) -> None:
    """A new field on the result, set by the handler, and the team's test of it."""
    package = service / "src" / "value_architect"
    events = package / "events.py"
    events.write_text(events.read_text() + '    priority: str = "normal"\n')
    handlers = package / "handlers.py"
    handlers.write_text(
        handlers.read_text().replace(
            "        source_event_id=event.event_id,\n",
            '        source_event_id=event.event_id,\n        priority="high",\n',
        )
    )
    tests = service / "tests" / "test_handlers.py"
    urgent = "\n\ndef test_results_are_urgent() -> None:\n"
    urgent += '    assert handle(REQUEST).priority == "high"\n'
    tests.write_text(tests.read_text() + urgent)
    commit_all(service, "Our own work")


def test_cruft_update_brings_a_template_change_and_keeps_the_teams_edits(
    template: Path, tmp_path: Path
) -> None:
    service = create(template, tmp_path / "out")
    edit_as_a_team_would(service)
    # The platform changes a thin file, and (to show it is skipped) the sample handler.
    dockerfile = template / "{{cookiecutter.service_name}}" / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            "STOPSIGNAL SIGTERM\n",
            'STOPSIGNAL SIGTERM\nLABEL org.opencontainers.image.vendor="platform"\n',
        )
    )
    handlers = template / "{{cookiecutter.service_name}}" / "src" / "{{cookiecutter.package_name}}"
    (handlers / "handlers.py").write_text("# the platform's new sample handler\n")
    new_commit = commit_all(template, "template B: a label on every image")

    run([*CRUFT, "update", "--skip-apply-ask", "--project-dir", str(service)], service)

    label = 'LABEL org.opencontainers.image.vendor="platform"'
    assert label in (service / "Dockerfile").read_text()
    package = service / "src" / "value_architect"
    assert 'priority="high"' in (package / "handlers.py").read_text()
    assert "priority" in (package / "events.py").read_text()
    assert json.loads((service / ".cruft.json").read_text())["commit"] == new_commit
    assert not list(service.rglob("*.rej"))
    python = install(service)
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service)
    assert re.search(r"\b9 passed\b", output), output


def test_a_chassis_version_bump_reaches_the_service(template: Path, tmp_path: Path) -> None:
    service = create(template, tmp_path / "out")
    chassis = tmp_path / "chassis"
    shutil.copytree(REPO / "chassis", chassis, ignore=shutil.ignore_patterns(".venv", "*.egg-info"))
    pyproject = chassis / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels)]
    run([*pip_wheel, str(chassis)], tmp_path)
    manifest = service / "pyproject.toml"
    manifest.write_text(manifest.read_text().replace("event-chassis~=1.0", "event-chassis~=1.1"))

    python = install(service, wheels)  # finds 1.1.0 beside the repository's 1.0.0

    shown = run([str(python), "-m", "pip", "show", "event-chassis"], service)
    assert "Version: 1.1.0" in shown
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service)
    assert " passed" in output
    assert "failed" not in output


def test_a_plain_cookiecutter_service_records_its_template_commit(
    template: Path, tmp_path: Path
) -> None:
    cookiecutter = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)]
    run([*cookiecutter, str(template)], tmp_path)
    service = tmp_path / "value-architect"

    state = json.loads((service / ".cruft.json").read_text())

    assert state["commit"] == git(template, "rev-parse", "HEAD")
    assert state["context"]["cookiecutter"]["service_name"] == "value-architect"
    output = run([*CRUFT, "check", "--project-dir", str(service)], service)
    assert "up to date" in output
