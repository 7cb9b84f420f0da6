"""What a report measured: the commit, and the chassis release that commit holds.

A report names the commit (flagged when the tree had uncommitted changes) and the
chassis version. When the chassis' code differs from its release tag
(`chassis-v<version>`), the version says so: a team pinned to that release runs other
code than what was measured.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHASSIS_CODE = ("chassis/src", "chassis/pyproject.toml")


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


def chassis_release() -> str:
    """`1.1.0`, or `1.1.0 + changes since chassis-v1.1.0`, or `1.1.0 (no tag …)`."""
    project = tomllib.loads((REPO / "chassis" / "pyproject.toml").read_text())["project"]
    version = str(project["version"])
    tag = f"chassis-v{version}"
    if git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}").returncode != 0:
        return f"{version} (no tag {tag} in this clone to compare with)"
    if git("diff", "--quiet", tag, "--", *CHASSIS_CODE).returncode != 0:
        return f"{version} + changes since {tag} (unreleased)"
    return version


def commit() -> str:
    """HEAD, flagged if anything but docs/ differs from it: the reports write docs/ (the
    bench's plot before its tables), and what is there measures nothing."""
    head = git("rev-parse", "HEAD").stdout.strip()
    dirty = git("status", "--porcelain", "--", ".", ":(exclude)docs").stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")
