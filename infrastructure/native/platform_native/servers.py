"""Start and stop real Kafka, Consul, Jaeger and Prometheus processes on 127.0.0.1.

Each server gets free loopback ports, writes its configuration into a work
directory, runs in its own process group (so stopping it also stops anything it
forked) and is only reported as started once a real readiness probe passes.

Servers started in-process are registered and killed when the interpreter
exits or receives SIGTERM, so a failing test run leaves nothing behind. Pass
``detach=True`` for daemons that must outlive the caller (``platform_native
up``); those are stopped explicitly with :func:`stop_process_group`.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, Self

HOST = "127.0.0.1"
LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A server failed to start or stop; the message includes its log tail."""


class ToolError(RuntimeError):
    """A command-line check (promtool, consul validate, deck) failed."""


# ------------------------------------------------------------------ ports & procs


def free_ports(count: int, *, udp: bool = False) -> list[int]:
    """Return ``count`` distinct ports that are free on 127.0.0.1.

    The kernel picks them (bind to port 0); all sockets stay open until every
    port is chosen so the same port is never returned twice. With ``udp`` the
    port must also be free for UDP (Consul's DNS and Serf use both).
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            if udp:
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(probe)
                try:
                    probe.bind((HOST, port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


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


def stop_process_group(pgid: int, timeout: float = 20.0) -> None:
    """SIGTERM a process group, wait up to ``timeout`` s, then SIGKILL it."""
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, timeout):
        return
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_group_gone(pgid, 10.0):
        raise ServerError(f"process group {pgid} survived SIGKILL: {group_members(pgid)}")


def kill_process_group(pgid: int) -> None:
    """SIGKILL a process group and wait until it is gone."""
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_group_gone(pgid, 10.0):
        raise ServerError(f"process group {pgid} survived SIGKILL: {group_members(pgid)}")


def _decode_proc_address(hex_addr: str) -> tuple[str, int]:
    """Turn /proc/net/tcp's ``0100007F:1F90`` into ``("127.0.0.1", 8080)``."""
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    # The kernel prints each 32-bit word in host (little-endian) byte order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port_hex, 16)


def listening_sockets(pids: Iterable[int]) -> list[tuple[str, str, int, int]]:
    """Return ``(protocol, ip, port, pid)`` for every listening socket of ``pids``.

    TCP sockets in LISTEN state and all bound UDP sockets count. Read from
    /proc so it works without ``ss`` or ``lsof``.
    """
    result = []
    for pid in pids:
        inodes = set()
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except OSError:
            continue
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


# ------------------------------------------------------------------- the registry

_REGISTRY: list[Server] = []
_REGISTRY_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def kill_registered() -> None:
    """SIGKILL every server this interpreter started (detached ones excepted)."""
    with _REGISTRY_LOCK:
        servers = list(_REGISTRY)
    for server in servers:
        with contextlib.suppress(Exception):  # best effort while exiting
            server.kill()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Kill our servers, then die of SIGTERM as the sender expects."""
    kill_registered()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _register(server: Server) -> None:
    global _HANDLERS_INSTALLED
    with _REGISTRY_LOCK:
        if server not in _REGISTRY:
            _REGISTRY.append(server)
        if not _HANDLERS_INSTALLED:
            _HANDLERS_INSTALLED = True
            atexit.register(kill_registered)
            # Only the main thread may set handlers; never replace someone else's.
            is_main = threading.current_thread() is threading.main_thread()
            if is_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


def _unregister(server: Server) -> None:
    with _REGISTRY_LOCK:
        if server in _REGISTRY:
            _REGISTRY.remove(server)


# ------------------------------------------------------------------------ probes


# Talks to our loopback servers directly, even if HTTP(S)_PROXY is set.
_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """Send one HTTP request; return (status, body) even for 4xx/5xx answers."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _LOOPBACK_OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; return (status, body) even for 4xx/5xx answers."""
    return http_request("GET", url, timeout=timeout)


def http_json(method: str, url: str, payload: Any = None) -> tuple[int, Any]:
    """Send ``payload`` as JSON; return the status and the decoded JSON answer.

    A body that is not JSON (e.g. an error message) is returned as text.
    """
    body = None if payload is None else json.dumps(payload).encode()
    status, raw = http_request(method, url, body)
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw.decode(errors="replace")


def tcp_accepts(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """Return True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return data


def kafka_api_versions_ok(port: int, host: str = HOST, timeout: float = 2.0) -> bool:
    """Send a Kafka ApiVersions (v0) request; True if the broker answers without error.

    This is the first request every Kafka client sends, so a good answer means
    the broker is really serving the protocol, not just accepting TCP.
    """
    client_id = b"platform-native"
    api_key, api_version, correlation_id = 18, 0, 7
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            body = _recv_exact(sock, size)
    except OSError:
        return False
    answered_id, error_code = struct.unpack(">ih", body[:6])
    return bool(answered_id == correlation_id and error_code == 0)


# -------------------------------------------------------------------------- base


class Server:
    """What all servers share: ports, a work dir, a process group and a log.

    Subclasses fill in :meth:`_prepare` (write config), :meth:`_command`,
    :meth:`_is_ready`, :meth:`ports` and :meth:`addresses`.
    """

    name: ClassVar[str] = "server"
    ready_timeout: ClassVar[float] = 60.0

    def __init__(self, workdir: Path | str, *, detach: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.detach = detach
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self._log_offset = 0

    # -- what subclasses provide

    def _prepare(self) -> None:
        """Write configuration files (and format storage) before each launch."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def ports(self) -> dict[str, int]:
        """Return every port this server listens on, by role."""
        raise NotImplementedError

    def addresses(self) -> dict[str, str]:
        """Return the addresses clients use, by role."""
        raise NotImplementedError

    # -- lifecycle

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self.workdir / f"{self.name}.log"

    def start(self) -> Self:
        """Launch the server and block until its readiness probe passes."""
        if self.is_running():
            return self
        self._prepare()
        self._launch()
        self._wait_ready()
        return self

    def _launch(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches children too
            )
        self.pid = self.process.pid
        if not self.detach:
            _register(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                self.kill()  # whatever it forked goes too
                raise ServerError(
                    f"{self.name} exited with code {code} before it was ready\n{self.log_report()}"
                )
            try:
                if self._is_ready():
                    return
            except (OSError, ValueError):
                pass  # not listening yet, or a half-written answer
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} not ready after {self.ready_timeout:.0f}s\n{self.log_report()}"
                )
            time.sleep(0.25)

    def is_running(self) -> bool:
        """Return True while the server's main process is alive."""
        return self.pid is not None and pid_alive(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL; data stays for restart()."""
        if self.pid is not None:
            stop_process_group(self.pid, timeout)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the process group at once (simulates a crash)."""
        if self.pid is not None:
            kill_process_group(self.pid)
        self._forget()

    def restart(self) -> Self:
        """Stop if needed and start again on the same ports with the same data."""
        self.stop()
        return self.start()

    def _forget(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)  # reap the zombie
        self.process = None
        self.pid = None
        _unregister(self)

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

    def _log_since_launch(self) -> str:
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
            "executable": self._command()[0],
            "ports": self.ports(),
            "addresses": self.addresses(),
            "workdir": str(self.workdir),
            "log": str(self.log_path),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pid={self.pid}, addresses={self.addresses()})"


@contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start ``servers`` in order and stop them in reverse order on exit."""
    started: list[Server] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield servers
    finally:
        for server in reversed(started):
            server.stop()


# ------------------------------------------------------------------------- Kafka

KAFKA_LOG4J2 = """\
# Written by platform_native: broker logs go to stdout, i.e. {name}.log.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
# The request log and state-change log are noisy at INFO.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = kafka.controller
logger.controller.level = WARN
"""

# A tiny Admin API client, run with Java's single-file source launcher, so
# creating several topics costs one JVM start instead of one per topic.
KAFKA_TOPICS_JAVA = """\
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.errors.TopicExistsException;

/** Usage: PlatformTopics BOOTSTRAP list | BOOTSTRAP create PARTITIONS REPLICAS NAME... */
public class PlatformTopics {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        try (Admin admin = Admin.create(props)) {
            if (args[1].equals("list")) {
                for (String name : new TreeSet<>(admin.listTopics().names().get())) {
                    System.out.println(name);
                }
                return;
            }
            int partitions = Integer.parseInt(args[2]);
            short replicas = Short.parseShort(args[3]);
            List<NewTopic> topics = new ArrayList<>();
            for (int i = 4; i < args.length; i++) {
                topics.add(new NewTopic(args[i], partitions, replicas));
            }
            for (Map.Entry<String, KafkaFuture<Void>> result :
                    admin.createTopics(topics).values().entrySet()) {
                try {
                    result.getValue().get();
                    System.out.println("created " + result.getKey());
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                    System.out.println("exists " + result.getKey());
                }
            }
        }
    }
}
"""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    found = shutil.which("java")
    if found is None:
        raise ServerError("java is not on PATH (Kafka needs Java 17+)")
    return found


def _kafka_cluster_id() -> str:
    """Return a random cluster id in Kafka's format (URL-safe base64, no padding).

    Like Kafka's own `Uuid.randomUuid()`, never one starting with "-": the
    storage tool's argument parser would take it for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Server):
    """A single-node KRaft Kafka (broker and controller in one JVM).

    Its data stays in ``<workdir>/data`` across :meth:`restart`, :meth:`kill`
    and :meth:`stop`, and the ports never change, so clients can reconnect.
    """

    name = "kafka"
    ready_timeout = 120.0

    def __init__(
        self,
        workdir: Path | str,
        *,
        jars: Path | None = None,
        heap: str = "512m",
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        if jars is None:
            from platform_native.build import ensure_kafka

            jars = ensure_kafka()
        self.jars = jars
        self.heap = heap
        self.port, self.controller_port = free_ports(2)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "server.properties"
        self.log4j_path = self.workdir / "log4j2.properties"
        self.tools_log4j_path = self.workdir / "tools-log4j2.properties"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap.servers``."""
        return f"{HOST}:{self.port}"

    def ports(self) -> dict[str, int]:
        return {"broker": self.port, "controller": self.controller_port}

    def addresses(self) -> dict[str, str]:
        return {"bootstrap": self.bootstrap}

    def _classpath(self) -> str:
        return f"{self.jars}/*"

    def _prepare(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    "# Written by platform_native: one KRaft node on loopback only.",
                    "process.roles=broker,controller",
                    "node.id=1",
                    # A static one-voter quorum keeps working if ports change later.
                    f"controller.quorum.voters=1@{HOST}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=3",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        self.log4j_path.write_text(KAFKA_LOG4J2.format(name=self.name, level="INFO"))
        self.tools_log4j_path.write_text(KAFKA_LOG4J2.format(name="tools", level="WARN"))
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage()

    def _tool(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a Java main class from the Kafka jars with quiet logging."""
        return subprocess.run(
            [
                _java(),
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={self.tools_log4j_path}",
                "-cp",
                self._classpath(),
                *args,
            ],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _format_storage(self) -> None:
        """Initialise the KRaft metadata log (once per data dir)."""
        args = [
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _kafka_cluster_id(),
        ]
        result = self._tool(*args, "--config", str(self.config_path))
        with self.log_path.open("a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise ServerError(
                f"kafka storage format failed (exit {result.returncode})\n{self.log_report()}"
            )

    def _command(self) -> list[str]:
        return [
            _java(),
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.config_path),
        ]

    def _is_ready(self) -> bool:
        started = "Kafka Server started" in self._log_since_launch()
        return started and kafka_api_versions_ok(self.port)

    def _topics_tool(self, *args: str) -> str:
        source = self.workdir / "PlatformTopics.java"
        source.write_text(KAFKA_TOPICS_JAVA)
        result = self._tool(str(source), self.bootstrap, *args)
        if result.returncode != 0:
            raise ToolError(
                f"kafka topics tool failed: {' '.join(args)}\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def create_topics(
        self, names: Sequence[str], partitions: int = 3, replication_factor: int = 1
    ) -> None:
        """Create topics (existing ones are left alone); auto-creation is off."""
        if names:
            self._topics_tool("create", str(partitions), str(replication_factor), *names)

    def list_topics(self) -> list[str]:
        """Return the names of the non-internal topics."""
        return self._topics_tool("list").split()


# ------------------------------------------------------------------------ Consul


class Consul(Server):
    """A Consul agent in -dev mode: a single in-memory server that is its own leader."""

    name = "consul"

    def __init__(
        self,
        workdir: Path | str,
        *,
        binary: Path | None = None,
        extra_config: str = "",
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        if binary is None:
            from platform_native.build import ensure_consul

            binary = ensure_consul()
        self.binary = binary
        self.extra_config = extra_config
        (
            self.http_port,
            self.dns_port,
            self.grpc_port,
            self.serf_lan_port,
            self.serf_wan_port,
            self.server_port,
        ) = free_ports(6, udp=True)
        self.config_path = self.workdir / "consul.hcl"

    @property
    def http_addr(self) -> str:
        """``127.0.0.1:PORT``, the value for CONSUL_HTTP_ADDR."""
        return f"{HOST}:{self.http_port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` for HTTP API calls."""
        return f"http://{self.http_addr}"

    @property
    def grpc_addr(self) -> str:
        """``127.0.0.1:PORT`` of the (plaintext) gRPC/xDS port."""
        return f"{HOST}:{self.grpc_port}"

    def ports(self) -> dict[str, int]:
        return {
            "http": self.http_port,
            "dns": self.dns_port,
            "grpc": self.grpc_port,
            "serf_lan": self.serf_lan_port,
            "serf_wan": self.serf_wan_port,
            "server": self.server_port,
        }

    def addresses(self) -> dict[str, str]:
        return {
            "http_addr": self.http_addr,
            "http_url": self.http_url,
            "dns": f"{HOST}:{self.dns_port}",
            "grpc": self.grpc_addr,
        }

    def _prepare(self) -> None:
        self.config_path.write_text(
            "# Written by platform_native.\n"
            "disable_update_check = true\n"
            "ui_config {\n  enabled = true\n}\n"
            "# Lets Prometheus scrape /v1/agent/metrics?format=prometheus.\n"
            "telemetry {\n"
            '  prometheus_retention_time = "60s"\n'
            "  disable_hostname = true\n"
            "}\n" + self.extra_config + "\n"
        )

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "agent",
            "-dev",
            "-node=platform-native",
            f"-bind={HOST}",
            f"-client={HOST}",
            f"-http-port={self.http_port}",
            "-https-port=-1",
            f"-dns-port={self.dns_port}",
            f"-grpc-port={self.grpc_port}",
            "-grpc-tls-port=-1",
            f"-serf-lan-port={self.serf_lan_port}",
            f"-serf-wan-port={self.serf_wan_port}",
            f"-server-port={self.server_port}",
            "-log-level=info",
            f"-config-file={self.config_path}",
        ]

    def _is_ready(self) -> bool:
        status, body = http_get(f"{self.http_url}/v1/status/leader")
        return status == 200 and bool(json.loads(body))

    def api(self, method: str, path: str, payload: Any = None) -> Any:
        """Call the HTTP API (``path`` like ``/v1/agent/services``); return its JSON."""
        status, answer = http_json(method, f"{self.http_url}{path}", payload)
        if status != 200:
            raise ToolError(f"consul {method} {path}: HTTP {status} {answer!r}")
        return answer


def consul_validate(
    *paths: Path | str, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``consul validate`` on agent config files or directories.

    Consul validates a whole agent configuration, so the files together must
    set ``data_dir`` (as infrastructure/consul/consul.hcl does).
    """
    if binary is None:
        from platform_native.build import ensure_consul

        binary = ensure_consul()
    return _run_tool([str(binary), "validate", *map(str, paths)], check)


# ------------------------------------------------------------------------ Jaeger

JAEGER_CONFIG = """\
# Written by platform_native: Jaeger v2 with in-memory storage, loopback only.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    logs:
      level: info
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: {host}
                port: {metrics}

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: {host}:{health}
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: {host}:{query_http}
    grpc:
      endpoint: {host}:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{otlp_grpc}
      http:
        endpoint: {host}:{otlp_http}

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class Jaeger(Server):
    """Jaeger v2 (an OpenTelemetry Collector build) with OTLP in and memory storage."""

    name = "jaeger"

    def __init__(
        self, workdir: Path | str, *, binary: Path | None = None, detach: bool = False
    ) -> None:
        super().__init__(workdir, detach=detach)
        if binary is None:
            from platform_native.build import ensure_jaeger

            binary = ensure_jaeger()
        self.binary = binary
        (
            self.otlp_grpc_port,
            self.otlp_http_port,
            self.query_http_port,
            self.query_grpc_port,
            self.health_port,
            self.metrics_port,
        ) = free_ports(6)
        self.config_path = self.workdir / "jaeger.yaml"

    @property
    def otlp_http(self) -> str:
        """OTLP/HTTP base URL (POST traces to ``<otlp_http>/v1/traces``)."""
        return f"http://{HOST}:{self.otlp_http_port}"

    @property
    def otlp_grpc(self) -> str:
        """OTLP/gRPC endpoint as OTEL_EXPORTER_OTLP_ENDPOINT expects it (plaintext)."""
        return f"http://{HOST}:{self.otlp_grpc_port}"

    @property
    def query_url(self) -> str:
        """Base URL of the UI and query API (``/api/services``, ``/api/v3/...``)."""
        return f"http://{HOST}:{self.query_http_port}"

    @property
    def metrics_url(self) -> str:
        """Jaeger's own Prometheus metrics."""
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        """healthcheckv2's status endpoint."""
        return f"http://{HOST}:{self.health_port}/status"

    def ports(self) -> dict[str, int]:
        return {
            "otlp_grpc": self.otlp_grpc_port,
            "otlp_http": self.otlp_http_port,
            "query_http": self.query_http_port,
            "query_grpc": self.query_grpc_port,
            "health": self.health_port,
            "metrics": self.metrics_port,
        }

    def addresses(self) -> dict[str, str]:
        return {
            "otlp_http": self.otlp_http,
            "otlp_grpc": self.otlp_grpc,
            "query_url": self.query_url,
            "metrics_url": self.metrics_url,
            "health_url": self.health_url,
        }

    def _prepare(self) -> None:
        self.config_path.write_text(JAEGER_CONFIG.format(host=HOST, **self.ports()))

    def _command(self) -> list[str]:
        return [str(self.binary), "--config", str(self.config_path)]

    def _is_ready(self) -> bool:
        status, _ = http_get(f"{self.query_url}/api/services")
        return (
            status == 200 and tcp_accepts(self.otlp_http_port) and tcp_accepts(self.otlp_grpc_port)
        )


# -------------------------------------------------------------------- Prometheus

PROMETHEUS_SELF_SCRAPE = """\
# Written by platform_native: Prometheus scraping only itself.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["{address}"]
"""


class Prometheus(Server):
    """Prometheus (built with Consul SD), storing its TSDB in the work dir."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path | str,
        *,
        config_text: str | None = None,
        bin_dir: Path | None = None,
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        if bin_dir is None:
            from platform_native.build import ensure_prometheus

            bin_dir = ensure_prometheus()
        self.bin_dir = bin_dir
        (self.port,) = free_ports(1)
        self.config_text = config_text
        self.config_path = self.workdir / "prometheus.yml"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, e.g. for a scrape target."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address}"

    def ports(self) -> dict[str, int]:
        return {"web": self.port}

    def addresses(self) -> dict[str, str]:
        return {"url": self.url}

    def start(self, config_text: str | None = None) -> Self:
        """Start with ``config_text`` as prometheus.yml (default: scrape itself)."""
        if config_text is not None:
            self.config_text = config_text
        return super().start()

    def _prepare(self) -> None:
        text = self.config_text or PROMETHEUS_SELF_SCRAPE.format(address=self.address)
        self.config_path.write_text(text)

    def _command(self) -> list[str]:
        return [
            str(self.bin_dir / "prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",  # allows POST /-/reload after editing the config
        ]

    def _is_ready(self) -> bool:
        status, _ = http_get(f"{self.url}/-/ready")
        return status == 200

    def query(self, promql: str) -> list[Any]:
        """Run an instant query; return ``data.result`` (a list of samples)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        status, body = http_get(url, timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise ToolError(f"query {promql!r} failed: HTTP {status} {body[:500]!r}")
        result: list[Any] = answer["data"]["result"]
        return result


def promtool_check_config(
    path: Path | str, *, bin_dir: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool check config`` on a Prometheus configuration file."""
    if bin_dir is None:
        from platform_native.build import ensure_prometheus

        bin_dir = ensure_prometheus()
    return _run_tool([str(bin_dir / "promtool"), "check", "config", str(path)], check)


# -------------------------------------------------------------------------- decK


def run_deck(
    *args: str, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``deck`` with ``args``; analytics (phoning home) is always disabled."""
    if binary is None:
        from platform_native.build import ensure_deck

        binary = ensure_deck()
    return _run_tool([str(binary), *args, "--analytics=false"], check)


def deck_file_validate(
    path: Path | str, *, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Validate a Kong declarative config offline (``deck file validate``)."""
    return run_deck("file", "validate", str(path), binary=binary, check=check)


def _run_tool(cmd: list[str], check: bool) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        output = result.stdout + result.stderr
        raise ToolError(f"command failed (exit {result.returncode}): {' '.join(cmd)}\n{output}")
    return result
