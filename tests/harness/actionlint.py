"""actionlint, the GitHub Actions workflow checker, built from its Go module (MIT).

It checks workflow syntax, expressions, action inputs and job graphs, and runs
shellcheck on every ``run:`` script when shellcheck is on PATH.
"""

from __future__ import annotations

from pathlib import Path

from platform_native import build, gobuild

VERSION = "1.7.12"
MODULE = "github.com/rhysd/actionlint/cmd/actionlint"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    gobuild.go_install(MODULE, VERSION, out, work, log, ldflags="")


def build_actionlint() -> Path:
    """Return the path of the ``actionlint`` binary, building it once."""
    return build.ensure("actionlint", VERSION, _recipe) / "actionlint"
