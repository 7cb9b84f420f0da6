"""Generated services as local processes: install, start, wait until healthy, stop.

Used by the integration tests and by `./deploy-all.sh --native`, so both run
the services exactly the same way: each in its own virtualenv and process,
configured only through environment variables, as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platform_native import installer
from platform_native.processes import HOST, free_ports


@dataclass(frozen=True)
class ServiceInfo:
    """What a service declares about itself in its pyproject.toml."""

    directory: Path
    name: str
    topics: tuple[str, ...]
    partitions: int
    http_port: int
    kong_snippet: Path | None
    package: str  # its Python package, from its console script ("pkg.__main__:main")
    database: str | None = None  # `database = "postgres"`: the platform gives it a database

    @classmethod
    def read(cls, directory: Path) -> ServiceInfo:
        project = tomllib.loads((directory / "pyproject.toml").read_text())
        platform = project["tool"]["event-platform"]
        snippet = platform.get("kong_snippet")
        name = project["project"]["name"]
        return cls(
            directory=directory.resolve(),
            name=name,
            topics=tuple(platform["topics"]),
            partitions=int(platform["partitions"]),
            http_port=int(platform["http_port"]),
            kong_snippet=directory.resolve() / snippet if snippet else None,
            package=project["project"]["scripts"][name].split(".")[0],
            database=platform.get("database"),
        )


def install(directory: Path, *, wheels: Path | None = None, upgrade: bool = False) -> Path:
    """Install the service into `<directory>/.venv`; returns its console script.

    `wheels` is a folder holding the event-chassis wheel built from this repository
    (`make wheels`): the installer looks there besides its usual index, and that wheel
    replaces whatever chassis the venv had, so a change to chassis/ reaches every service.
    The service itself is installed editable: a team's edits run as they are.
    """
    info = ServiceInfo.read(directory)
    env_dir = directory / ".venv"
    script = env_dir / "bin" / info.name
    links = [wheels] if wheels is not None else []
    if upgrade or not script.exists():
        python = installer.create_venv(env_dir)
        installer.install(python, "-e", str(directory), find_links=links)
    if wheels is not None:
        [chassis] = sorted(wheels.glob("event_chassis-*.whl"))
        python = env_dir / "bin" / "python"
        installer.install(python, str(chassis), no_deps=True, reinstall=True)
    return script


@dataclass
class ServiceProcess:
    """One running instance of a service."""

    info: ServiceInfo
    script: Path
    env: dict[str, str]
    log_path: Path
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, *, detach: bool = False) -> ServiceProcess:
        self.http_port = self.http_port or free_ports(1)[0]
        env = {**os.environ, **self.env, "HTTP_HOST": HOST, "HTTP_PORT": str(self.http_port)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.script)],
                cwd=self.info.directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an orchestrator sends it; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def passing_instances(consul_http: str, service: str) -> list[dict[str, Any]]:
    """Instances of `service` whose every check passes, as Consul's health API says."""
    url = f"http://{consul_http}/v1/health/service/{service}?passing=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        entries: list[dict[str, Any]] = json.load(response)
    return entries


def wait_until_passing(
    consul_http: str,
    service: str,
    count: int = 1,
    timeout: float = 90.0,
    process: ServiceProcess | None = None,
) -> list[dict[str, Any]]:
    """Wait until Consul reports `count` passing instances of `service`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            instances = passing_instances(consul_http, service)
        except OSError:
            instances = []
        if len(instances) >= count:
            return instances
        if (
            process is not None
            and process.process is not None
            and process.process.poll() is not None
        ):
            raise RuntimeError(
                f"{service} exited with {process.process.returncode}:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = process.log_tail() if process else ""
            raise TimeoutError(f"{service} not passing in Consul after {timeout:.0f}s\n{tail}")
        time.sleep(0.25)
