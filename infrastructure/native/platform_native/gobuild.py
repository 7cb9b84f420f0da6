"""Build a Go program from the module proxy's source at a pinned version.

Used by the Consul, Jaeger, Prometheus and decK recipes. Go never switches
toolchains behind our back (GOTOOLCHAIN=local); ``-mod=mod`` lets it add
go.sum entries after local replace directives are dropped; GOWORK=off ignores
a go.work shipped in a module (Prometheus has one). Builds run at nice 10:
the machine's few cores are shared.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from platform_native.build import BuildLog

GO_ENV = {
    "GOTOOLCHAIN": "local",
    "GOFLAGS": "-mod=mod",
    "GOWORK": "off",
    "CGO_ENABLED": "0",
}
GO_BUILD_FLAGS = ["-trimpath"]
GO_LDFLAGS = "-s -w"
NICE = ["nice", "-n", "10"]


def module_source(module: str, version: str, work: Path, log: BuildLog) -> Path:
    """Download ``module@v<version>`` and return a writable copy of its source."""
    go = log.require_tool("go")
    output = log.run(
        [go, "mod", "download", "-json", f"{module}@v{version}"],
        cwd=work,
        env=GO_ENV,
        capture=True,
    )
    info = json.loads(output)
    if "Error" in info:
        raise log.failure(f"go mod download failed: {info['Error']}")
    source = work / "src"
    # The module cache is read-only; copy so go.mod and go.sum can be edited.
    shutil.copytree(info["Dir"], source, symlinks=True)
    for directory, _dirs, files in os.walk(source):
        for path in [directory, *(os.path.join(directory, f) for f in files)]:
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    drop_local_replaces(source, log)
    return source


def drop_local_replaces(source: Path, log: BuildLog) -> None:
    """Remove ``replace`` lines that point at local directories.

    Module zips leave out nested modules (Consul's api, sdk, ...), so a
    ``replace x => ./api`` points at nothing; without it Go uses the published
    version that go.mod already requires. Module-to-module replaces stay.
    """
    edit = json.loads(log.run(["go", "mod", "edit", "-json"], cwd=source, env=GO_ENV, capture=True))
    drops = []
    for replace in edit.get("Replace") or []:
        if replace["New"].get("Version"):
            continue
        old = replace["Old"]
        spec = f"{old['Path']}@{old['Version']}" if old.get("Version") else old["Path"]
        drops.append(f"-dropreplace={spec}")
    if drops:
        log.run(["go", "mod", "edit", *drops], cwd=source, env=GO_ENV)


def go_build(
    source: Path,
    package: str,
    output: Path,
    log: BuildLog,
    ldflags: str = "",
    extra: Sequence[str] = (),
) -> None:
    """Compile one Go main package into ``output``."""
    flags = f"{GO_LDFLAGS} {ldflags}".strip()
    command = ["go", "build", *GO_BUILD_FLAGS, *extra, "-ldflags", flags, "-o", str(output)]
    log.run([*NICE, *command, package], cwd=source, env=GO_ENV)


def go_install(
    module: str, version: str, out: Path, work: Path, log: BuildLog, ldflags: str
) -> None:
    """``go install module@v<version>`` into ``out``."""
    go = log.require_tool("go")
    flags = f"{GO_LDFLAGS} {ldflags}".strip()
    command = [go, "install", *GO_BUILD_FLAGS, "-ldflags", flags, f"{module}@v{version}"]
    log.run([*NICE, *command], cwd=work, env={**GO_ENV, "GOBIN": str(out)})
