"""Services keep up with the platform: template changes by `cruft update`, plumbing by a
chassis version bump, and in both cases the team's own edits survive.

The template is taken from this working tree (committed or not) into a scratch git
repository, so what is tested is what is here.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

from .rendering import all_passed, install, run
from .template_repo import commit_all, git, template_repository

CRUFT = [sys.executable, "-m", "cruft"]
# The chassis line of a service that derives it: the template's repository at a commit.
GIT_REFERENCE = (
    "event-chassis[vault] @ git+file://localhost{template}@{commit}#subdirectory=chassis"
)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """This working tree's template files in a fresh git repository, as commit A."""
    return template_repository(tmp_path / "template")


def dependencies(service: Path) -> list[str]:
    return list(tomllib.loads((service / "pyproject.toml").read_text())["project"]["dependencies"])


def create(template: Path, output: Path, **answers: str) -> Path:
    """`cruft create`, then the service becomes its team's git repository."""
    output.mkdir(parents=True, exist_ok=True)
    command = [*CRUFT, "create", str(template), "--no-input", "--output-dir", str(output)]
    run([*command, "--extra-context", json.dumps(answers)], output)
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
    urgent = "\n\nasync def test_results_are_urgent() -> None:\n"
    urgent += '    assert (await handle(REQUEST)).priority == "high"\n'
    tests.write_text(tests.read_text() + urgent)
    commit_all(service, "Our own work")


def test_cruft_update_brings_a_template_change_and_keeps_the_teams_edits(
    template: Path, tmp_path: Path
) -> None:
    service = create(template, tmp_path / "out")
    first_commit = git(template, "rev-parse", "HEAD")
    assert dependencies(service) == [GIT_REFERENCE.format(template=template, commit=first_commit)]
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
    # The chassis reference is in the platform's pyproject.toml: it moved with the update.
    assert dependencies(service) == [GIT_REFERENCE.format(template=template, commit=new_commit)]
    assert not list(service.rglob("*.rej"))
    python = install(service)
    # The team changed its event, so its contract too (its CI says so until it does).
    run([str(python), "-m", "event_chassis.contract", "write"], service)
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service)
    assert re.search(r"\b10 passed\b", output), output


def test_a_chassis_version_bump_reaches_the_service(template: Path, tmp_path: Path) -> None:
    """The platform team's own index: the service takes the chassis by range, `~=X.Y`,
    and a release of the next minor version reaches it with no change to the service."""
    pyproject = template / "chassis" / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    major, minor = map(int, version.split(".")[:2])
    series = f"event-chassis~={major}.{minor}"
    service = create(template, tmp_path / "out", chassis_requirement=series)
    assert dependencies(service) == [series.replace("event-chassis", "event-chassis[vault]")]
    bumped = f"{major}.{minor + 1}.0"
    pyproject.write_text(
        pyproject.read_text().replace(f'version = "{version}"', f'version = "{bumped}"')
    )
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels)]
    run([*pip_wheel, str(template / "chassis")], tmp_path)

    python = install(service, wheels)  # the index: the new wheel beside the repository's own

    shown = run([str(python), "-m", "pip", "show", "event-chassis"], service)
    assert f"Version: {bumped}" in shown
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service)
    assert all_passed(output), output[-3000:]


def test_a_plain_cookiecutter_service_records_its_template_commit(
    template: Path, tmp_path: Path
) -> None:
    cookiecutter = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)]
    run([*cookiecutter, str(template)], tmp_path)
    service = tmp_path / "value-architect"

    state = json.loads((service / ".cruft.json").read_text())

    commit = git(template, "rev-parse", "HEAD")
    assert state["commit"] == commit
    assert dependencies(service) == [GIT_REFERENCE.format(template=template, commit=commit)]
    assert state["context"]["cookiecutter"]["service_name"] == "value-architect"
    output = run([*CRUFT, "check", "--project-dir", str(service)], service)
    assert "up to date" in output
