"""Docker Compose v2, built from its Go module as a Docker CLI plugin.

Debian has only the old Python docker-compose 1.29. v5.6.0 is the newest
release this machine's Go (1.26.8) builds: v5.7.x need Go 1.26.10. The
binary is cached in ``<cache>/docker-compose-<version>/``, a folder the
private engine (engine.DockerEngine) links into its CLI's ``cli-plugins``.
"""

from __future__ import annotations

from pathlib import Path

from platform_native import build, gobuild

VERSION = "5.6.0"
MODULE = "github.com/docker/compose/v5"
VERSION_FLAG = f"-X {MODULE}/internal.Version=v{VERSION}"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    source = gobuild.module_source(MODULE, VERSION, work, log)
    gobuild.go_build(source, "./cmd", out / "docker-compose", log, ldflags=VERSION_FLAG)


def build_plugins() -> Path:
    """The folder holding the ``docker-compose`` CLI plugin, built once."""
    return build.ensure("docker-compose", VERSION, _recipe)
