"""decK, Kong's declarative-config CLI: merges and validates the Kong snippets.

Kong itself cannot run natively; decK checks its configuration offline.
Built from the Go module github.com/kong/deck; analytics (phoning home) are
always off.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from platform_native import build, gobuild, versions
from platform_native.tools import run_tool

VERSION_FLAG = f"-X github.com/kong/deck/cmd.VERSION=v{versions.DECK_VERSION}"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """``go install``, or the module source when go install refuses.

    ``go install module@version`` refuses modules whose go.mod has replace
    directives (decK has two), so the fallback is the path that normally runs.
    """
    try:
        gobuild.go_install(
            versions.DECK_MODULE, versions.DECK_VERSION, out, work, log, VERSION_FLAG
        )
        return
    except build.BuildError:
        log.note("go install refused; building from the module source instead")
    source = gobuild.module_source(versions.DECK_MODULE, versions.DECK_VERSION, work, log)
    gobuild.go_build(source, ".", out / "deck", log, ldflags=VERSION_FLAG)


def build_deck() -> Path:
    """Return the path of the ``deck`` binary, building it once."""
    return build.ensure("deck", versions.DECK_VERSION, _recipe) / "deck"


def run_deck(
    *args: str, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``deck`` with ``args``; analytics (phoning home) are always disabled."""
    return run_tool([str(binary or build_deck()), *args, "--analytics=false"], check)


def deck_file_validate(
    path: Path | str, *, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Validate a Kong declarative config offline (``deck file validate``)."""
    return run_deck("file", "validate", str(path), binary=binary, check=check)
