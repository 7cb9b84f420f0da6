"""The one interface every native server has: build, configure, start, health, stop.

A server gets free loopback ports when it is created, writes what it needs
into its work directory (:meth:`Server.configure`), runs in its own process
group, and is only reported as started once :meth:`Server.health` passes.
Started in-process it is killed when the interpreter exits or gets SIGTERM;
``detach=True`` is for daemons that must outlive the caller
(``platform_native up``), stopped later by process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

from platform_native import processes

LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A server failed to start or stop; the message includes its log tail."""


class Server:
    """What all servers share: ports, a work dir, a process group and a log.

    Subclasses provide :meth:`build` (the cached artifact), :meth:`configure`,
    :meth:`command`, :meth:`health`, :meth:`ports`, :meth:`addresses` and
    :meth:`compose_addresses`.
    """

    name: ClassVar[str] = "server"
    version: ClassVar[str] = ""
    ready_timeout: ClassVar[float] = 60.0
    # Sent to the main process alone before the group gets SIGTERM (see
    # processes.stop_process_group); None: SIGTERM to the whole group at once.
    leader_stop_signal: ClassVar[signal.Signals | None] = None

    def __init__(self, workdir: Path | str, *, detach: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.detach = detach
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self._log_offset = 0

    # -- what each server provides

    @classmethod
    def build(cls) -> Path:
        """Return the cached artifact (binary or jar directory), building it once."""
        raise NotImplementedError

    def configure(self) -> None:
        """Write what the server reads at start (overlays, storage) into the work dir."""

    def command(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The server's environment."""
        return dict(os.environ)

    def account(self) -> processes.Account | None:
        """The unprivileged user the server runs as; None: the caller's own user."""
        return None

    def working_directory(self) -> Path:
        """Where the server process starts (a folder its account can reach)."""
        return self.workdir

    def health(self) -> bool:
        """True once the server really serves (its readiness probe)."""
        raise NotImplementedError

    def ports(self) -> dict[str, int]:
        """Every port this server listens on, by role."""
        raise NotImplementedError

    def addresses(self) -> dict[str, str]:
        """The addresses clients use, by role."""
        raise NotImplementedError

    def compose_addresses(self) -> dict[str, str]:
        """Its Compose addresses (``consul:8500``) mapped to its native ones."""
        return {}

    # -- lifecycle

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self.workdir / f"{self.name}.log"

    def start(self) -> Self:
        """Configure, launch, and block until :meth:`health` passes."""
        if self.is_running():
            return self
        self.configure()
        self._launch()
        self._wait_healthy()
        return self

    def _launch(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.working_directory(),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches children too
                **processes.run_as(self.account()),
            )
        self.pid = self.process.pid
        if not self.detach:
            processes.register(self)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                self.kill()  # whatever it forked goes too
                raise ServerError(
                    f"{self.name} exited with code {code} before it was ready\n{self.log_report()}"
                )
            with contextlib.suppress(OSError, ValueError):  # not listening yet, half an answer
                if self.health():
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} not ready after {self.ready_timeout:.0f}s\n{self.log_report()}"
                )
            time.sleep(0.25)

    def is_running(self) -> bool:
        """Return True while the server's main process is alive."""
        return self.pid is not None and processes.pid_alive(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group (its leader gets ``leader_stop_signal`` first), wait,
        then SIGKILL; data stays for restart()."""
        if self.pid is not None:
            processes.stop_process_group(self.pid, timeout, self.leader_stop_signal)
        self._forget()

    def remove_outside(self) -> None:
        """Delete what this server keeps outside its work directory (stopped first).

        Nothing by default; deleting the work directory then deletes everything.
        """

    def kill(self) -> None:
        """SIGKILL the process group at once (simulates a crash)."""
        if self.pid is not None:
            processes.kill_process_group(self.pid)
        self._forget()

    def restart(self) -> Self:
        """Stop if needed and start again on the same ports."""
        self.stop()
        return self.start()

    def _forget(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)  # reap the zombie
        self.process = None
        self.pid = None
        processes.unregister(self)

    # -- reporting

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def log_report(self) -> str:
        """Return the log path and tail, for error messages."""
        return f"log: {self.log_path}\n--- last {LOG_TAIL_LINES} lines ---\n{self.log_tail()}"

    def log_since_launch(self) -> str:
        """What the server logged since its last launch."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def state(self) -> dict[str, Any]:
        """Return what ``platform_native up`` records in state.json."""
        return {
            "pid": self.pid,
            "pgid": self.pid,  # start_new_session: the group id is the leader's pid
            "executable": self.command()[0],
            "version": self.version,
            "ports": self.ports(),
            "addresses": self.addresses(),
            "workdir": str(self.workdir),
            "log": str(self.log_path),
            "stop_signal": self.leader_stop_signal.name if self.leader_stop_signal else None,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pid={self.pid}, addresses={self.addresses()})"


class OtlpReceiver:
    """A server that takes OTLP on two loopback ports (Jaeger, the collector)."""

    otlp_grpc_port: int
    otlp_http_port: int

    @property
    def otlp_http(self) -> str:
        """OTLP/HTTP base URL (a service's OTEL_EXPORTER_OTLP_ENDPOINT; POST to /v1/traces)."""
        return f"http://{processes.HOST}:{self.otlp_http_port}"

    @property
    def otlp_grpc(self) -> str:
        """OTLP/gRPC endpoint as OTEL_EXPORTER_OTLP_ENDPOINT expects it (plaintext)."""
        return f"http://{processes.HOST}:{self.otlp_grpc_port}"


@contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start ``servers`` in order; on exit stop them in reverse order and delete what
    they keep outside their work directories (:meth:`Server.remove_outside`).

    For tests and the bench, whose work directories are thrown away afterwards.
    """
    started: list[Server] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield servers
    finally:
        for server in reversed(started):
            server.stop()
        for server in servers:
            server.remove_outside()
