"""Loopback ports, process groups, and killing what we started when we exit.

Every server runs in its own process group (``start_new_session``), so
stopping the group also stops anything it forked. Servers started without
``detach`` are registered here and SIGKILLed when the interpreter exits or
receives SIGTERM, so a failing test run leaves nothing behind. Everything is
read from /proc, so it works without ``ss``, ``lsof`` or ``psutil``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple, Protocol

HOST = "127.0.0.1"


class ProcessError(RuntimeError):
    """A process group would not die."""


class Account(NamedTuple):
    """An unprivileged OS user a server runs as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def run_as(account: Account | None) -> dict[str, Any]:
    """subprocess options that start a process as ``account`` with no supplementary
    groups (none inherited from root); no options for None, the caller's own user."""
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


# ------------------------------------------------------------------------ ports


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _candidates() -> list[int]:
    """Ports to try, in random order, outside the ephemeral range when there is room.

    A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the
    same range every outgoing connection takes its local port from; a Kafka client
    connecting between our pick and the server's bind can take it ("address already
    in use"). Ports below (or above) that range are never taken that way.
    """
    low, high = _ephemeral_range()
    outside = [*range(10000, low), *range(high + 1, 65536)]
    ports = outside if len(outside) > 1000 else list(range(1024, 65536))
    return random.sample(ports, len(ports))


# Every port handed out in this process. A server picks its ports when it is built and
# binds them only when it starts, so without this a later pick (another server's) could
# return a port an earlier pick gave out but nobody bound yet.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_ports(count: int, *, udp: bool = False) -> list[int]:
    """Return ``count`` distinct ports that are free on 127.0.0.1.

    All sockets stay open until every port is chosen, and no port is returned twice
    in one process. With ``udp`` the port must also be free for UDP (Consul's
    DNS and Serf use both).
    """
    with _handed_out_lock:
        ports = _pick(count, udp)
        _handed_out.update(ports)
    return ports


def _pick(count: int, udp: bool) -> list[int]:
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for port in _candidates():
            if len(ports) == count:
                break
            if port in _handed_out:
                continue
            kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
            try:
                for kind in kinds:
                    sock = socket.socket(socket.AF_INET, kind)
                    held.append(sock)
                    sock.bind((HOST, port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise OSError(f"no {count} free ports on {HOST}")
    return ports


# ------------------------------------------------------------- process groups


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, process group) of ``pid`` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """Return True if ``pid`` exists and is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Return the live (non-zombie) pids in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_process_group(
    pgid: int, timeout: float = 20.0, leader_signal: signal.Signals | None = None
) -> None:
    """SIGTERM a process group, wait up to ``timeout`` s, then SIGKILL it.

    With ``leader_signal`` the group's leader gets that signal first and the group up
    to ``timeout`` s to end by itself: a server that stops its own children (PostgreSQL's
    SIGINT, a fast shutdown) must not have them signalled behind its back.
    """
    if leader_signal is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pgid, leader_signal)
        if _wait_group_gone(pgid, timeout):
            return
    _signal_group(pgid, signal.SIGTERM)
    if not _wait_group_gone(pgid, timeout):
        kill_process_group(pgid)


def kill_process_group(pgid: int) -> None:
    """SIGKILL a process group and wait until it is gone."""
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_group_gone(pgid, 10.0):
        raise ProcessError(f"process group {pgid} survived SIGKILL: {group_members(pgid)}")


# --------------------------------------------------------------------- sockets


def _decode_proc_address(hex_addr: str) -> tuple[str, int]:
    """Turn /proc/net/tcp's ``0100007F:1F90`` into ``("127.0.0.1", 8080)``."""
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    # The kernel prints each 32-bit word in host (little-endian) byte order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port_hex, 16)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, str, int, int]]:
    """Return ``(protocol, ip, port, pid)`` for every listening socket of ``pids``.

    TCP sockets in LISTEN state and all bound UDP sockets count.
    """
    result = []
    for pid in pids:
        inodes = _socket_inodes(pid)
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                listening = state == "0A" if proto.startswith("tcp") else state == "07"
                if listening and inode in inodes:
                    ip, port = _decode_proc_address(local)
                    result.append((proto, ip, port, pid))
    return result


# -------------------------------------------------------------------- registry


class Killable(Protocol):
    """Anything that can be SIGKILLed at exit (a started server)."""

    def kill(self) -> None: ...


_REGISTRY: list[Killable] = []
_REGISTRY_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def kill_registered() -> None:
    """SIGKILL everything this interpreter started (detached servers excepted)."""
    with _REGISTRY_LOCK:
        started = list(_REGISTRY)
    for item in started:
        with contextlib.suppress(Exception):  # best effort while exiting
            item.kill()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Kill our servers, then die of SIGTERM as the sender expects."""
    kill_registered()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def register(item: Killable) -> None:
    """Kill ``item`` when this interpreter exits or gets SIGTERM."""
    global _HANDLERS_INSTALLED
    with _REGISTRY_LOCK:
        if item not in _REGISTRY:
            _REGISTRY.append(item)
        if not _HANDLERS_INSTALLED:
            _HANDLERS_INSTALLED = True
            atexit.register(kill_registered)
            # Only the main thread may set handlers; never replace someone else's.
            is_main = threading.current_thread() is threading.main_thread()
            if is_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


def unregister(item: Killable) -> None:
    """Forget ``item`` (it was stopped)."""
    with _REGISTRY_LOCK:
        if item in _REGISTRY:
            _REGISTRY.remove(item)
