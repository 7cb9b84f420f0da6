"""Fetch or build the platform servers at their pinned versions.

Nothing here downloads prebuilt binaries: Kafka's jars come from Maven Central;
Consul, Jaeger, decK and Prometheus are compiled from the sources the Go module
proxy serves. Each ``ensure_*`` returns the cached artifact straight away when
it exists; otherwise it builds in a staging directory, logs to
``<cache>/logs/<name>-<version>.log`` and renames the finished result into
place, so a half-finished build is never mistaken for a cached one. A lock
file makes concurrent callers wait for one build instead of racing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from platform_native import versions

# Go builds that never switch toolchains behind our back; -mod=mod lets go add
# go.sum entries after we drop replace directives; GOWORK=off ignores a go.work
# shipped in a module (Prometheus has one) so each module builds on its own.
GO_ENV = {
    "GOTOOLCHAIN": "local",
    "GOFLAGS": "-mod=mod",
    "GOWORK": "off",
    "CGO_ENABLED": "0",
}
GO_BUILD_FLAGS = ["-trimpath"]
GO_LDFLAGS = "-s -w"

# Classes the servers module launches; checked after the Maven download so a
# version bump that moves them fails at build time rather than at start.
KAFKA_REQUIRED_CLASSES = {
    f"kafka_{versions.KAFKA_SCALA_VERSION}": [
        "kafka/Kafka.class",
        "kafka/tools/StorageTool.class",
    ],
    "kafka-tools": ["org/apache/kafka/tools/TopicCommand.class"],
    "kafka-clients": ["org/apache/kafka/clients/admin/Admin.class"],
}

LOG_TAIL_LINES = 30


class BuildError(RuntimeError):
    """A fetch or build step failed; the message names the command and the log."""


class _BuildLog:
    """Run commands for one artifact, appending everything they print to its log."""

    def __init__(self, name: str, log_path: Path, stream: IO[str]) -> None:
        self.name = name
        self.path = log_path
        self._stream = stream

    def note(self, message: str) -> None:
        """Write a line of our own to the log, to explain what happens next."""
        self._stream.write(f"### {message}\n")
        self._stream.flush()

    def run(
        self,
        cmd: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        capture: bool = False,
    ) -> str:
        """Run ``cmd``; return its stdout when ``capture`` (also copied to the log)."""
        self.note(f"$ (cd {shlex.quote(str(cwd))} && {shlex.join(cmd)})")
        full_env = {**os.environ, **(env or {})}
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._stream,
            stderr=self._stream if capture else subprocess.STDOUT,
            text=True,
            check=False,
        )
        output = result.stdout or ""
        if capture:
            self._stream.write(output)
        self._stream.flush()
        if result.returncode != 0:
            raise self.failure(f"command failed (exit {result.returncode}): {shlex.join(cmd)}")
        return output

    def failure(self, reason: str) -> BuildError:
        """Build an error that names the command's log and quotes its tail."""
        self._stream.flush()
        lines = self.path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        tail = "\n".join(lines)
        return BuildError(
            f"{self.name}: {reason}\nlog: {self.path}\n--- last {LOG_TAIL_LINES} lines ---\n{tail}"
        )


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an flock so two processes never build the same artifact at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure(name: str, version: str, build: Callable[[Path, Path, _BuildLog], None]) -> Path:
    """Return ``<cache>/<name>-<version>``, building it first if it is missing.

    ``build(out, work, log)`` fills ``out``; both directories sit inside the
    cache so the final ``os.rename`` is atomic (same filesystem).
    """
    target = versions.artifact_dir(name, version)
    if target.is_dir():
        return target
    cache = versions.cache_dir()
    with _exclusive_lock(cache / "locks" / f"{name}-{version}.lock"):
        if target.is_dir():  # another process finished it while we waited
            return target
        log_path = cache / "logs" / f"{name}-{version}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-{version}-", dir=cache))
        try:
            out, work = staging / "out", staging / "work"
            out.mkdir()
            work.mkdir()
            with log_path.open("w") as stream:
                build(out, work, _BuildLog(name, log_path, stream))
            os.rename(out, target)
        except BuildError as error:
            print(f"build of {name} {version} failed:\n{error}", file=sys.stderr)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _require_tool(tool: str, log: _BuildLog) -> str:
    """Return the full path of ``tool`` or fail with a message saying what is missing."""
    found = shutil.which(tool)
    if found is None:
        log.note(f"{tool} not found on PATH")
        raise log.failure(f"`{tool}` is not on PATH; install it first")
    return found


# --------------------------------------------------------------------------- Kafka

KAFKA_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by platform_native.build: only used to resolve Kafka's runtime jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.event-platform</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""


def _build_kafka(out: Path, work: Path, log: _BuildLog) -> None:
    """Resolve the broker, its tools and a log4j2 binding into one jar directory."""
    mvn = _require_tool("mvn", log)
    _require_tool("java", log)
    pom = work / "pom.xml"
    pom.write_text(
        KAFKA_POM.format(
            scala=versions.KAFKA_SCALA_VERSION,
            kafka=versions.KAFKA_VERSION,
            log4j=versions.LOG4J_VERSION,
        )
    )
    log.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
            "-DincludeScope=runtime",
        ],
        cwd=work,
    )
    for artifact, classes in KAFKA_REQUIRED_CLASSES.items():
        jar = out / f"{artifact}-{versions.KAFKA_VERSION}.jar"
        if not jar.is_file():
            raise log.failure(f"expected jar {jar.name} is missing after the Maven download")
        with zipfile.ZipFile(jar) as archive:
            names = set(archive.namelist())
        missing = [c for c in classes if c not in names]
        if missing:
            raise log.failure(f"{jar.name} lacks {', '.join(missing)}")


def ensure_kafka() -> Path:
    """Return the directory of Kafka jars (use it as ``java -cp '<dir>/*'``)."""
    return _ensure("kafka", versions.KAFKA_VERSION, _build_kafka)


# ------------------------------------------------------------------------ Go tools


def _module_source(module: str, version: str, work: Path, log: _BuildLog) -> Path:
    """Download ``module@version`` and return a writable copy of its source."""
    go = _require_tool("go", log)
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
    return source


def _drop_local_replaces(source: Path, log: _BuildLog) -> None:
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


def _go_build(
    source: Path,
    package: str,
    output: Path,
    log: _BuildLog,
    ldflags: str = "",
    extra: Sequence[str] = (),
) -> None:
    """Compile one Go main package into ``output``."""
    flags = f"{GO_LDFLAGS} {ldflags}".strip()
    log.run(
        [
            "go",
            "build",
            *GO_BUILD_FLAGS,
            *extra,
            "-ldflags",
            flags,
            "-o",
            str(output),
            package,
        ],
        cwd=source,
        env=GO_ENV,
    )


def _build_consul(out: Path, work: Path, log: _BuildLog) -> None:
    """Build Consul from its module source without the nested-module replaces."""
    source = _module_source(versions.CONSUL_MODULE, versions.CONSUL_VERSION, work, log)
    _drop_local_replaces(source, log)
    _go_build(source, ".", out / "consul", log)


def ensure_consul() -> Path:
    """Return the path of the ``consul`` binary."""
    return _ensure("consul", versions.CONSUL_VERSION, _build_consul) / "consul"


def _build_jaeger(out: Path, work: Path, log: _BuildLog) -> None:
    """Build the Jaeger v2 binary (an OpenTelemetry Collector distribution)."""
    source = _module_source(versions.JAEGER_MODULE, versions.JAEGER_MODULE_VERSION, work, log)
    _drop_local_replaces(source, log)
    version_flag = (
        "-X github.com/jaegertracing/jaeger/internal/version.latestVersion="
        f"v{versions.JAEGER_VERSION}"
    )
    _go_build(source, "./cmd/jaeger", out / "jaeger", log, ldflags=version_flag)


def ensure_jaeger() -> Path:
    """Return the path of the ``jaeger`` (v2) binary."""
    return _ensure("jaeger", versions.JAEGER_VERSION, _build_jaeger) / "jaeger"


def _build_deck(out: Path, work: Path, log: _BuildLog) -> None:
    """Install decK with ``go install``; fall back to building its source.

    ``go install module@version`` refuses modules whose go.mod has replace
    directives (decK has two), so the fallback is the path that normally runs.
    """
    version_flag = f"-X github.com/kong/deck/cmd.VERSION=v{versions.DECK_VERSION}"
    go = _require_tool("go", log)
    try:
        log.run(
            [
                go,
                "install",
                *GO_BUILD_FLAGS,
                "-ldflags",
                f"{GO_LDFLAGS} {version_flag}",
                f"{versions.DECK_MODULE}@v{versions.DECK_VERSION}",
            ],
            cwd=work,
            env={**GO_ENV, "GOBIN": str(out)},
        )
        return
    except BuildError:
        log.note("go install refused; building from the module source instead")
    source = _module_source(versions.DECK_MODULE, versions.DECK_VERSION, work, log)
    _drop_local_replaces(source, log)
    _go_build(source, ".", out / "deck", log, ldflags=version_flag)


def ensure_deck() -> Path:
    """Return the path of the ``deck`` binary (always run it with --analytics=false)."""
    return _ensure("deck", versions.DECK_VERSION, _build_deck) / "deck"


# ---------------------------------------------------------------------- Prometheus


def _build_prometheus(out: Path, work: Path, log: _BuildLog) -> None:
    """Build prometheus and promtool with only the service discovery we use.

    The web UI's JavaScript is not part of the Go module (it needs npm), so the
    UI pages are missing; the HTTP API, /-/ready and /metrics all work.
    """
    source = _module_source(
        versions.PROMETHEUS_MODULE, versions.PROMETHEUS_MODULE_VERSION, work, log
    )
    _drop_local_replaces(source, log)
    version_flag = f"-X github.com/prometheus/common/version.Version={versions.PROMETHEUS_VERSION}"
    tags = ["-tags", versions.PROMETHEUS_BUILD_TAGS]
    for tool in ("prometheus", "promtool"):
        _go_build(source, f"./cmd/{tool}", out / tool, log, version_flag, tags)


def ensure_prometheus() -> Path:
    """Return the directory holding ``prometheus`` and ``promtool``."""
    return _ensure("prometheus", versions.PROMETHEUS_VERSION, _build_prometheus)


# --------------------------------------------------------------------------- all


def ensure_all() -> dict[str, Path]:
    """Make sure every artifact is cached; return their paths by tool name."""
    return {
        "kafka": ensure_kafka(),
        "consul": ensure_consul(),
        "jaeger": ensure_jaeger(),
        "deck": ensure_deck(),
        "prometheus": ensure_prometheus(),
    }
