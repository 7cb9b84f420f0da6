"""Cached builds: each artifact is built once, under a lock, and reused.

Nothing here downloads prebuilt binaries: Kafka's jars come from Maven
Central, the Go servers are compiled from the sources the Go module proxy
serves (the recipes live with each server in ``servers/``). :func:`ensure`
returns ``<cache>/<name>-<version>`` straight away when it exists; otherwise
it builds in a staging directory, logs to ``<cache>/logs/<name>-<version>.log``
and renames the finished result into place, so a half-finished build is never
mistaken for a cached one. An flock makes concurrent callers (another
terminal, another test run) wait for one build instead of racing.

A build prints a line when it starts, one every ~15 s while it runs (or while
it waits for another process's build), and one when it ends. :func:`build_many`
runs several, two at a time.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from platform_native import progress, versions

LOG_TAIL_LINES = 30
# Builds run two at a time: while one Go build downloads modules or links (one core), the
# other compiles.
BUILDS_AT_ONCE = 2


class BuildError(RuntimeError):
    """A fetch or build step failed; the message names the command and the log."""


class BuildLog:
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
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env={**os.environ, **(env or {})},
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

    def require_tool(self, tool: str) -> str:
        """Return the full path of ``tool`` or fail saying what is missing."""
        found = shutil.which(tool)
        if found is None:
            self.note(f"{tool} not found on PATH")
            raise self.failure(f"`{tool}` is not on PATH; install it first")
        return found


Recipe = Callable[[Path, Path, BuildLog], None]


@contextmanager
def _exclusive_lock(lock_path: Path, label: str, log_path: Path) -> Iterator[None]:
    """Hold an flock; while another process holds it, say so every ~15 s."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.say(f"    waiting for another process building {label} (log: {log_path})")
            with progress.heartbeat(f"waiting for {label}", f", log: {log_path}"):
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(name: str, version: str, recipe: Recipe) -> Path:
    """Return ``<cache>/<name>-<version>``, building it with ``recipe`` if it is missing.

    ``recipe(out, work, log)`` fills ``out``; both directories sit inside the
    cache so the final ``os.rename`` is atomic (same filesystem).
    """
    target = versions.artifact_dir(name, version)
    if target.is_dir():
        return target
    cache = versions.cache_dir()
    label = f"{name} {version}"
    log_path = cache / "logs" / f"{name}-{version}.log"
    with _exclusive_lock(cache / "locks" / f"{name}-{version}.lock", label, log_path):
        if target.is_dir():  # another process finished it while we waited
            return target
        log_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-{version}-", dir=cache))
        started = time.monotonic()
        progress.say(f"    building {label} (log: {log_path})")
        try:
            out, work = staging / "out", staging / "work"
            out.mkdir()
            work.mkdir()
            with (
                log_path.open("w") as stream,
                progress.heartbeat(f"building {label}", f", log: {log_path}"),
            ):
                recipe(out, work, BuildLog(name, log_path, stream))
            os.rename(out, target)
        except BuildError as error:
            progress.say(f"    build of {label} failed:\n{error}")
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        progress.say(f"    built {label} in {progress.elapsed(time.monotonic() - started)}")
    return target


Build = tuple[str, Callable[[], Path]]  # (version, a function returning the artifact's path)


def build_many(builds: Mapping[str, Build], at_once: int = BUILDS_AT_ONCE) -> dict[str, Path]:
    """Build (or find in the cache) each of ``builds``, ``at_once`` at a time.

    Prints ``    <name> <version>: <path> (<time>)`` as each one ends. The first failure
    is raised once the builds already running end; the ones not started are dropped.
    """

    def one(name: str, version: str, build: Callable[[], Path]) -> Path:
        started = time.monotonic()
        path = build()
        took = progress.elapsed(time.monotonic() - started)
        progress.say(f"    {name} {version}: {path} ({took})")
        return path

    pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="build")
    try:
        running = {name: pool.submit(one, name, *build) for name, build in builds.items()}
        return {name: future.result() for name, future in running.items()}
    finally:
        pool.shutdown(cancel_futures=True)
