"""Command line: build the servers, or run them as daemons for local development.

From the repository root::

    PYTHONPATH=infrastructure/native python3 -m platform_native build
    PYTHONPATH=infrastructure/native python3 -m platform_native up --state-dir .platform/infra
    PYTHONPATH=infrastructure/native python3 -m platform_native up --state-dir .platform/infra \
        --kafka-brokers 3
    PYTHONPATH=infrastructure/native python3 -m platform_native status --state-dir .platform/infra
    PYTHONPATH=infrastructure/native python3 -m platform_native down --state-dir .platform/infra

``up`` starts detached processes that outlive this command and records them
in ``<state-dir>/state.json``; ``down`` stops exactly those process groups.
``--kafka-brokers 3`` runs three Kafka nodes (servers/kafka_cluster.py says why
combined broker+controller); ``status`` then shows each and the partitions' ISR.
Every step prints a line with its elapsed time, long ones a line every ~15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platform_native import alert_rules, progress, tls, versions
from platform_native.build import BuildError, build_many
from platform_native.processes import ProcessError, group_members, pid_alive, stop_process_group
from platform_native.servers import (
    BUILDS,
    Consul,
    Jaeger,
    Kafka,
    OpenBao,
    OtelCollector,
    Postgres,
    Prometheus,
    Server,
    VictoriaLogs,
)
from platform_native.servers.alerting import Alerting
from platform_native.servers.base import ServerError
from platform_native.servers.kafka_cluster import KafkaCluster, describe_partitions
from platform_native.servers.postgres import remove_data
from platform_native.tools import ToolError

STATE_FILE = "state.json"


def server_names(kafka_brokers: int) -> tuple[str, ...]:
    """What `up` starts, by name; a recorded run with other servers is restarted."""
    kafka = ("kafka", *(f"kafka-{n}" for n in range(2, kafka_brokers + 1)))
    return ("consul", "jaeger", "victorialogs", "otelcol", *kafka, "postgres", "openbao",
            "prometheus", *Alerting.NAMES)  # fmt: skip


def client_env(
    kafka: KafkaCluster,
    consul: Consul,
    jaeger: Jaeger,
    prometheus: Prometheus,
    collector: OtelCollector,
    logs: VictoriaLogs,
) -> dict[str, str]:
    """Environment variables a service needs to talk to the native platform.

    Services send traces and logs to the collector only; the query URLs are
    for people and tests reading them back.
    """
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,  # every broker's
        "CONSUL_HTTP_ADDR": consul.http_addr,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "JAEGER_QUERY_URL": jaeger.query_url,
        "LOGS_QUERY_URL": logs.query_url,
        "PROMETHEUS_URL": prometheus.url,
    }


# ------------------------------------------------------------------------ build


def build_all() -> dict[str, Path]:
    """Build (or find in the cache) every server, one line each with its time."""
    progress.say(f"==> building the servers (cache: {versions.cache_dir()})")
    pinned = versions.pinned_versions()
    return build_many({name: (pinned[name], build) for name, build in BUILDS.items()})


def cmd_build(_args: argparse.Namespace) -> int:
    """Build or fetch everything."""
    build_all()
    return 0


# --------------------------------------------------------------------- up/down


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Write state.json atomically so a reader never sees half a file."""
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)


def _is_alive(server: dict[str, Any]) -> bool:
    """True if the recorded pid is alive and still runs the recorded program.

    Checking the program guards against a pid reused after a reboot.
    """
    pid = int(server["pid"])
    if not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return bool(argv0.decode(errors="replace") == server["executable"])


def _stop_recorded(state: dict[str, Any]) -> list[str]:
    """Stop every process group in ``state``; return names that did not die."""
    survivors = []
    # Reverse start order: Prometheus first, Consul last.
    for name, server in reversed(list(state["servers"].items())):
        if not _is_alive(server):
            continue
        leader_signal = server.get("stop_signal")  # PostgreSQL: SIGINT, its fast shutdown
        try:
            stop_process_group(
                int(server["pgid"]),
                leader_signal=signal.Signals[leader_signal] if leader_signal else None,
            )
        except ProcessError as error:
            print(f"{name}: {error}", file=sys.stderr)
        if group_members(int(server["pgid"])):
            survivors.append(name)
    return survivors


def _start(server: Server) -> None:
    """Start one server with a line before, heartbeats while waiting, a line after."""
    label = f"{server.name} {server.version}"
    progress.say(f"==> starting {label}")
    started = time.monotonic()
    with progress.heartbeat(f"starting {label}", f", log: {server.log_path}"):
        server.start()
    took = progress.elapsed(time.monotonic() - started)
    progress.say(f"    {server.name} ready in {took} (pid {server.pid}, log: {server.log_path})")


def _start_kafka(cluster: KafkaCluster, started: list[Server]) -> None:
    """Start the Kafka nodes together (a quorum needs a majority), with progress lines."""
    label = f"kafka {Kafka.version}" + (f" x{len(cluster.nodes)}" if len(cluster.nodes) > 1 else "")
    progress.say(f"==> starting {label}")
    began = time.monotonic()
    with progress.heartbeat(f"starting {label}", f", logs: {cluster.nodes[0].log_path}"):
        cluster.start()
    started.extend(cluster.nodes)
    took = progress.elapsed(time.monotonic() - began)
    pids = ", ".join(str(node.pid) for node in cluster.nodes)
    progress.say(f"    kafka ready in {took} (pid {pids})")


def _state_name(server: Server) -> str:
    return server.state_name if isinstance(server, Kafka) else server.name


def kafka_health(state: dict[str, Any]) -> tuple[bool, str]:
    """Whether every partition has a leader and its whole ISR, and a line saying so."""
    nodes = {n: s for n, s in state["servers"].items() if n == "kafka" or n.startswith("kafka-")}
    live = [s for s in nodes.values() if _is_alive(s)]
    if not live:
        return False, "no Kafka node runs"
    probe = Kafka(Path(live[0]["workdir"]))  # its tools' config is already there
    bootstrap = ",".join(s["addresses"]["bootstrap"] for s in live)
    try:
        partitions = describe_partitions(probe, bootstrap)
    except ToolError as error:
        return False, f"partitions unknown: {error}"
    under = [p for p in partitions if p.under_replicated]
    offline = [p for p in partitions if p.leader is None]
    line = (
        f"{len(live)}/{len(nodes)} brokers up, {len(partitions)} partitions: "
        f"{len(under)} under-replicated, {len(offline)} offline"
    )
    shown = ", ".join(f"{p.topic}-{p.partition} isr={list(p.isr)}" for p in (under + offline)[:5])
    return not (under or offline), f"{line}{f' ({shown})' if shown else ''}"


def print_addresses(state: dict[str, Any]) -> None:
    """Every address of the running servers, as a person uses them."""
    servers = state["servers"]
    rows = [
        ("Consul UI", servers["consul"]["addresses"]["ui"]),
        ("Jaeger UI", servers["jaeger"]["addresses"]["query_url"]),
        ("Prometheus", servers["prometheus"]["addresses"]["url"]),
        ("Alertmanager", servers["alertmanager"]["addresses"]["url"]),
        ("Alert log", servers["alert-log"]["addresses"]["file"]),
        ("Kafka", state["env"]["KAFKA_BOOTSTRAP_SERVERS"]),
        ("PostgreSQL", servers["postgres"]["addresses"]["url"]),
        ("OpenBao", servers["openbao"]["addresses"]["url"]),
        ("OpenBao audit", servers["openbao"]["addresses"]["audit_log"]),
        ("OTLP (HTTP)", servers["otelcol"]["addresses"]["otlp_http"]),
        ("Logs UI", servers["victorialogs"]["addresses"]["ui"]),
        ("Logs query", servers["victorialogs"]["addresses"]["query_url"]),
    ]
    for label, address in rows:
        progress.say(f"    {label:<12} {address}")


def cmd_up(args: argparse.Namespace) -> int:
    """Start every server as a detached daemon and record them in state.json."""
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_state(state_dir)
    if previous is not None:
        recorded = previous["servers"]
        wanted = server_names(args.kafka_brokers)
        if set(recorded) == set(wanted) and all(_is_alive(s) for s in recorded.values()):
            progress.say(f"==> already running (see {state_dir / STATE_FILE})")
            print_addresses(previous)
            return 0
        progress.say("==> a previous run is partly dead or older; stopping what is left of it")
        _stop_recorded(previous)
        (state_dir / STATE_FILE).unlink()

    began = time.monotonic()
    for build in BUILDS.values():  # at once when cached; a cold build reports itself
        build()
    # Every `up` starts from empty data directories (PostgreSQL's may be elsewhere).
    remove_data(state_dir / "postgres")
    for name in server_names(max(args.kafka_brokers, 9)):  # also a bigger run's leftovers
        shutil.rmtree(state_dir / name, ignore_errors=True)
    consul = Consul(state_dir / "consul", detach=True)
    jaeger = Jaeger(state_dir / "jaeger", detach=True)
    logs = VictoriaLogs(state_dir / "victorialogs", detach=True)
    collector = OtelCollector(
        state_dir / "otelcol", jaeger=jaeger, logs_endpoint=logs.otlp_endpoint, detach=True
    )
    kafka = KafkaCluster(state_dir, args.kafka_brokers, detach=True)
    postgres = Postgres(state_dir / "postgres", detach=True)
    openbao = OpenBao(state_dir / "openbao", detach=True)  # its bootstrap: platform_deploy
    alerting = Alerting.create(state_dir, kafka.bootstrap, detach=True)
    prometheus = Prometheus(
        state_dir / "prometheus", peers=[consul, jaeger, *kafka.nodes, *alerting], detach=True
    )

    started: list[Server] = []  # listed before they start: a half-started one stops too
    try:
        for server in (consul, jaeger, logs, collector):
            started.append(server)
            _start(server)
        _start_kafka(kafka, started)
        for server in (postgres, openbao, *alerting, prometheus):
            started.append(server)
            _start(server)
        topics = [t for t in (args.topics or "").split(",") if t]
        if topics:
            progress.say(f"==> creating topics {', '.join(topics)}")
            kafka.create_topics(topics, partitions=args.partitions)
            progress.say(f"    topics: {', '.join(kafka.nodes[0].list_topics())}")
    except BaseException:  # also Ctrl-C: detached daemons would outlive us
        for running in reversed(started):
            running.stop()
            running.remove_outside()  # PostgreSQL's data; the next `up` starts empty anyway
        raise

    state: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions.pinned_versions(),
        "servers": {_state_name(s): s.state() for s in started},
        "env": {
            **client_env(kafka, consul, jaeger, prometheus, collector, logs),
            **alerting.env(),
        },
    }
    _write_state(state_dir, state)
    progress.say(f"==> all servers ready in {progress.elapsed(time.monotonic() - began)}")
    print_addresses(state)
    progress.say(f"    state: {state_dir / STATE_FILE}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop what state.json records, remove it, and check nothing survived."""
    state_dir = Path(args.state_dir).resolve()
    state = _read_state(state_dir)
    if state is None:
        print("not running (no state.json)")
        return 0
    survivors = _stop_recorded(state)
    if survivors:
        print(f"still running after SIGKILL: {', '.join(survivors)}", file=sys.stderr)
        return 1
    (state_dir / STATE_FILE).unlink()
    # The next `up` starts from empty data anyway; this one may be outside the state dir.
    if "postgres" in state["servers"]:
        remove_data(Path(state["servers"]["postgres"]["workdir"]))
    print("stopped: " + ", ".join(state["servers"]))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print each recorded server as alive or dead; exit 1 if any is dead."""
    state = _read_state(Path(args.state_dir).resolve())
    if state is None:
        print("not running (no state.json)")
        return 1
    all_alive = True
    for name, server in state["servers"].items():
        alive = _is_alive(server)
        all_alive = all_alive and alive
        status = "alive" if alive else "dead"
        print(f"{name:<12} {status:<6} pid={server['pid']}  {server['addresses']}")
    if "kafka" in state["servers"]:
        in_sync, line = kafka_health(state)
        all_alive = all_alive and in_sync
        print(f"{'kafka ISR':<12} {'ok' if in_sync else 'NOT OK':<6} {line}")
    return 0 if all_alive else 1


def cmd_env(args: argparse.Namespace) -> int:
    """Print one client setting of the running platform (e.g. CONSUL_HTTP_ADDR)."""
    state = _read_state(Path(args.state_dir).resolve())
    if state is None:
        print("not running (no state.json)", file=sys.stderr)
        return 1
    print(state["env"][args.name])
    return 0


def cmd_alert_rules(_args: argparse.Namespace) -> int:
    """Render infrastructure/prometheus/rules/alerts.yml from the thresholds."""
    progress.say(f"    wrote {alert_rules.write()}")
    return 0


def cmd_tls(args: argparse.Namespace) -> int:
    """Make a throwaway CA and a keystore for a TLS server on localhost/127.0.0.1."""
    certificate = tls.make_server_certificate(Path(args.out).resolve(), args.name)
    print(f"CA (clients trust it): {certificate.ca_file}")
    print(f"keystore (PKCS12):     {certificate.keystore}")
    print(f"its password:          {certificate.password_file}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m platform_native", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="fetch/build every server into the cache")
    build.set_defaults(func=cmd_build)

    up = commands.add_parser("up", help="start all servers as daemons")
    up.add_argument("--state-dir", required=True, help="where state.json, data and logs go")
    up.add_argument("--topics", help="comma-separated Kafka topics to create")
    up.add_argument("--partitions", type=int, default=3, help="partitions per topic (3)")
    up.add_argument(
        "--kafka-brokers",
        type=int,
        default=1,
        help="Kafka brokers (1); with 3, topics get 3 replicas and min.insync.replicas=2",
    )
    up.set_defaults(func=cmd_up)

    for name, command in (("down", cmd_down), ("status", cmd_status)):
        sub = commands.add_parser(name, help=command.__doc__)
        sub.add_argument("--state-dir", required=True)
        sub.set_defaults(func=command)
    env = commands.add_parser("env", help=cmd_env.__doc__)
    env.add_argument("--state-dir", required=True)
    env.add_argument("name")
    env.set_defaults(func=cmd_env)

    rules = commands.add_parser("alert-rules", help=cmd_alert_rules.__doc__)
    rules.set_defaults(func=cmd_alert_rules)

    make_tls = commands.add_parser("tls", help=cmd_tls.__doc__)
    make_tls.add_argument("--out", required=True, help="directory, e.g. .secrets/kafka")
    make_tls.add_argument("--name", default="server", help="keystore name (<name>.p12)")
    make_tls.set_defaults(func=cmd_tls)

    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BuildError:
        print("error: build failed (details above)", file=sys.stderr)
        return 1
    except (ServerError, ToolError, ProcessError, tls.TLSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
