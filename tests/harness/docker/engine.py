"""A private Docker engine: Debian's dockerd as root, on its own socket and folders.

No engine runs on these machines by default, but Debian's ``docker.io`` starts
one that needs no host set-up: no iptables rules, no default bridge, its own
config file, and everything it keeps (socket, data root, exec root, pid file)
in one temporary folder that goes when it stops. Storage is overlay2 where the
kernel can mount an overlay in that folder, else vfs (plain copies, works
anywhere): vfs copies the whole image for every build step, and one service
image took 400 s to build with it against 39 s with overlay2 on this machine.
``PLATFORM_DOCKER_STORAGE=vfs`` forces vfs. Its containers get their own cgroup parent, so even a
killed run leaves no container behind. dockerd has no phone-home; the only
traffic it starts itself is registry pulls, and those go to a loopback port
that refuses them (HTTPS_PROXY), so a pull fails at once and nothing leaves
the machine. Containers that need the platform use ``--network host``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from platform_native import apt, processes, progress
from platform_native.servers.base import Server, ServerError

APT_PACKAGES = ("docker.io", "debootstrap")
# Seconds a docker CLI call may take; image builds pass their own.
CLI_TIMEOUT = 300.0


class EngineUnavailable(RuntimeError):
    """This machine cannot run a private dockerd at all (the reason is the message)."""


def unavailable_reason() -> str | None:
    """Why dockerd cannot run here, or None when it can (once installed)."""
    if sys.platform != "linux":
        return f"dockerd runs on Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "a private dockerd starts as root only (CI runs as root)"
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        return "no dockerd, and no apt-get to install Debian's docker.io"
    return None


def ensure_installed() -> None:
    """Install Debian's docker.io (dockerd, containerd, runc, the CLI) and debootstrap."""
    reason = unavailable_reason()
    if reason is not None:
        raise EngineUnavailable(reason)
    if all(shutil.which(tool) for tool in ("dockerd", "docker", "debootstrap")):
        return
    try:
        apt.install(APT_PACKAGES)
    except apt.AptError as error:
        raise EngineUnavailable(str(error)) from error


def storage_driver(folder: Path) -> str:
    """overlay2 if an overlay mounts in ``folder`` (and vfs is not asked for), else vfs."""
    if os.environ.get("PLATFORM_DOCKER_STORAGE", "overlay2") == "vfs":
        return "vfs"
    probe = folder / "overlay-probe"
    layers = [probe / name for name in ("lower", "upper", "work", "merged")]
    for layer in layers:
        layer.mkdir(parents=True)
    options = "lowerdir={},upperdir={},workdir={}".format(*layers[:3])
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(layers[3])],
        capture_output=True,
        check=False,
    )
    if mounted.returncode == 0:
        subprocess.run(["umount", str(layers[3])], capture_output=True, check=False)
    shutil.rmtree(probe, ignore_errors=True)
    return "overlay2" if mounted.returncode == 0 else "vfs"


class DockerEngine(Server):
    """dockerd with everything in one temporary folder; ``docker()`` runs the CLI on it.

    ``plugins`` is a folder of Docker CLI plugins (``docker-compose``) for the CLI.
    """

    name = "dockerd"
    ready_timeout = 90.0

    def __init__(self, plugins: Path | None = None) -> None:
        # Short and in /tmp: containerd's sockets live under the exec root, and a
        # unix socket path may not exceed 108 bytes.
        super().__init__(tempfile.mkdtemp(prefix="epd-", dir="/tmp"))
        self.socket = self.workdir / "docker.sock"
        self.cgroup_parent = self.workdir.name
        self.config_dir = self.workdir / "cli"
        (self.config_dir / "cli-plugins").mkdir(parents=True)
        for plugin in sorted(plugins.iterdir()) if plugins else []:
            (self.config_dir / "cli-plugins" / plugin.name).symlink_to(plugin)
        self._refused = processes.free_ports(1)[0]  # nothing listens: pulls fail at once
        self.storage_driver = storage_driver(self.workdir)

    # -- the Server interface

    def configure(self) -> None:
        (self.workdir / "daemon.json").write_text("{}\n")  # never the host's /etc/docker

    def command(self) -> list[str]:
        root = self.workdir
        return [
            "dockerd",
            f"--host=unix://{self.socket}",
            f"--config-file={root / 'daemon.json'}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--cgroup-parent={self.cgroup_parent}",
            f"--storage-driver={self.storage_driver}",
            "--iptables=false",
            "--bridge=none",
        ]

    def env(self) -> dict[str, str]:
        refused = f"http://{processes.HOST}:{self._refused}"
        proxies = {name: refused for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy")}
        return {**os.environ, **proxies, "https_proxy": refused, "NO_PROXY": "", "no_proxy": ""}

    def health(self) -> bool:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(2.0)
            client.connect(str(self.socket))
            client.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in client.recv(1024).split(b"\r\n", 1)[0]

    def ports(self) -> dict[str, int]:
        return {}

    def addresses(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket}"}

    # -- the CLI

    def cli_env(self) -> dict[str, str]:
        """The environment that points the docker CLI (and Compose) at this engine."""
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.config_dir),
            "DOCKER_BUILDKIT": "0",  # the engine's own builder; Debian ships no buildx
            "DOCKER_CLI_HINTS": "false",
        }

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = CLI_TIMEOUT,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker <args>`` (``env``: more variables); fail with its output on failure."""
        result = subprocess.run(
            ["docker", *args],
            env={**self.cli_env(), **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ServerError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    # -- lifecycle

    def start(self) -> DockerEngine:
        started = time.monotonic()
        progress.say(
            f"    starting a private dockerd ({self.storage_driver}, unix://{self.socket})"
        )
        try:
            super().start()
        except BaseException:
            self.kill()
            raise
        progress.say(f"    dockerd ready in {progress.elapsed(time.monotonic() - started)}")
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Remove containers and networks, let dockerd stop its containerd, delete the folder."""
        if self.pid is not None and self.is_running():
            with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
                containers = self.docker("ps", "--all", "--quiet").stdout.split()
                if containers:
                    self.docker("rm", "--force", "--volumes", *containers)
                self.docker("network", "prune", "--force")
            os.kill(self.pid, signal.SIGTERM)  # dockerd alone: it stops containerd itself
            deadline = time.monotonic() + timeout
            while self.is_running() and time.monotonic() < deadline:
                time.sleep(0.2)
        self.kill()

    def kill(self) -> None:
        """SIGKILL dockerd, its containerd and shims, and every process of its containers.

        The bridges of its networks go too: the kernel keeps them after dockerd dies.
        """
        bridges = self._bridges()
        for _attempt in range(3):
            left = self._processes()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        if self.pid is not None:
            self._forget()
        for bridge in bridges:
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        self._remove_folder()

    def _bridges(self) -> list[str]:
        """The host interfaces of our engine's bridge networks (``br-<id>``)."""
        if self.pid is None or not self.is_running():
            return []
        with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
            listed = self.docker("network", "ls", "--quiet", "--filter=driver=bridge", timeout=9)
            return [f"br-{network[:12]}" for network in listed.stdout.split()]
        return []

    def _processes(self) -> set[int]:
        """Our dockerd's group, whatever names our folder (containerd, shims), our cgroups."""
        found = set(processes.group_members(self.pid)) if self.pid is not None else set()
        marker = str(self.workdir).encode()
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
        for cgroup in self._cgroups():
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in (cgroup / "cgroup.procs").read_text().split())
        found.discard(os.getpid())
        return {pid for pid in found if processes.pid_alive(pid)}

    def _remove_folder(self) -> None:
        """Unmount what the engine left mounted in its folder, delete it and its cgroups."""
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.workdir))), reverse=True):
            subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        for cgroup in self._cgroups():
            with contextlib.suppress(OSError):
                cgroup.rmdir()

    def _cgroups(self) -> list[Path]:
        """Our containers' cgroups and their parent, in every hierarchy, innermost first."""
        found = []
        for parent in Path("/sys/fs/cgroup").glob(f"**/{self.cgroup_parent}"):
            for directory, _subdirs, _files in os.walk(parent, topdown=False):
                found.append(Path(directory))
        return found
