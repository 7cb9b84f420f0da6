"""This working tree's template, committed into a scratch git repository.

What a platform team publishes: the template, its hooks and the chassis (a service
generated from the repository installs the chassis from it, by git URL). Taken from
the working tree, committed or not, so what is tested is what is here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .rendering import REPO

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
# Not the template's: the teams' services, the benchmark and the measured reports.
NOT_PUBLISHED = ("services/", "bench/", "docs/")


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


def template_repository(root: Path) -> Path:
    """The template files (chassis/ among them) in a new repository at `root`, committed."""
    files = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for name in files:
        source = REPO / name
        if name.startswith(NOT_PUBLISHED) or not source.is_file():
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / name)
    git(root, "init", "--quiet", "--initial-branch=main")
    commit_all(root, "template A")
    return root
