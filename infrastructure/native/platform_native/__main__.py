"""Command line: build the servers, or run them as daemons for local development.

From the repository root::

    PYTHONPATH=infrastructure/native python -m platform_native build
    PYTHONPATH=infrastructure/native python -m platform_native up --state-dir .platform \\
        --prometheus-config infrastructure/prometheus/prometheus.yml --topics orders,payments
    PYTHONPATH=infrastructure/native python -m platform_native status --state-dir .platform
    PYTHONPATH=infrastructure/native python -m platform_native down --state-dir .platform

``up`` starts detached processes that outlive this command and records them
in ``<state-dir>/state.json``; ``down`` stops exactly those process groups.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platform_native import build, versions
from platform_native.promconfig import loopback_config
from platform_native.servers import (
    Consul,
    Jaeger,
    Kafka,
    Prometheus,
    Server,
    ServerError,
    ToolError,
    group_members,
    pid_alive,
    stop_process_group,
)

STATE_FILE = "state.json"


def prometheus_replacements(
    kafka: Kafka, consul: Consul, jaeger: Jaeger, prometheus: Prometheus
) -> dict[str, str]:
    """Map the compose host names used in prometheus.yml to the native addresses.

    ``--prometheus-config`` is a plain text template: every key below is
    replaced literally, so infrastructure/prometheus/prometheus.yml works as is.
    Jobs with no native server (kong, kafka-exporter) are dropped.
    """
    return {
        "consul:8500": consul.http_addr,
        "jaeger:8888": f"127.0.0.1:{jaeger.metrics_port}",
        "jaeger:13133": f"127.0.0.1:{jaeger.health_port}",
        "jaeger:16686": f"127.0.0.1:{jaeger.query_http_port}",
        "jaeger:4317": f"127.0.0.1:{jaeger.otlp_grpc_port}",
        "jaeger:4318": f"127.0.0.1:{jaeger.otlp_http_port}",
        "kafka:9092": kafka.bootstrap,
        "prometheus:9090": prometheus.address,
        "localhost:9090": prometheus.address,
    }


def client_env(
    kafka: Kafka, consul: Consul, jaeger: Jaeger, prometheus: Prometheus
) -> dict[str, str]:
    """Environment variables a service needs to talk to the native platform."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "CONSUL_HTTP_ADDR": consul.http_addr,
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "JAEGER_QUERY_URL": jaeger.query_url,
        "PROMETHEUS_URL": prometheus.url,
    }


# ------------------------------------------------------------------------ build


def cmd_build(_args: argparse.Namespace) -> int:
    """Build or fetch everything, reporting each artifact and how long it took."""
    steps: list[tuple[str, str, Callable[[], Path]]] = [
        ("kafka", versions.KAFKA_VERSION, build.ensure_kafka),
        ("consul", versions.CONSUL_VERSION, build.ensure_consul),
        ("jaeger", versions.JAEGER_VERSION, build.ensure_jaeger),
        ("deck", versions.DECK_VERSION, build.ensure_deck),
        ("prometheus", versions.PROMETHEUS_VERSION, build.ensure_prometheus),
    ]
    print(f"cache: {versions.cache_dir()}")
    for name, version, ensure in steps:
        started = time.monotonic()
        path = ensure()
        print(f"{name:<11} {version:<12} {path}  ({time.monotonic() - started:.1f}s)")
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
        try:
            stop_process_group(int(server["pgid"]))
        except ServerError as error:
            print(f"{name}: {error}", file=sys.stderr)
        if group_members(int(server["pgid"])):
            survivors.append(name)
    return survivors


def cmd_up(args: argparse.Namespace) -> int:
    """Start all four servers as detached daemons and record them in state.json."""
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_state(state_dir)
    if previous is not None:
        if all(_is_alive(s) for s in previous["servers"].values()):
            print(f"already running (see {state_dir / STATE_FILE})")
            return 0
        print("a previous run is partly dead; stopping what is left of it")
        _stop_recorded(previous)
        (state_dir / STATE_FILE).unlink()

    build.ensure_all()
    # Every `up` starts from empty data directories.
    for name in ("consul", "jaeger", "kafka", "prometheus"):
        shutil.rmtree(state_dir / name, ignore_errors=True)
    consul = Consul(state_dir / "consul", detach=True)
    jaeger = Jaeger(state_dir / "jaeger", detach=True)
    kafka = Kafka(state_dir / "kafka", detach=True)
    prometheus = Prometheus(state_dir / "prometheus", detach=True)
    if args.prometheus_config:
        prometheus.config_text = loopback_config(
            Path(args.prometheus_config).read_text(),
            prometheus_replacements(kafka, consul, jaeger, prometheus),
        )

    order: tuple[Server, ...] = (consul, jaeger, kafka, prometheus)
    started: list[Server] = []
    began = time.monotonic()
    try:
        for server in order:
            server.start()
            started.append(server)
            print(f"{server.name:<11} ready  pid={server.pid}  {server.addresses()}")
        topics = [t for t in (args.topics or "").split(",") if t]
        if topics:
            kafka.create_topics(topics, partitions=args.partitions)
            print(f"topics: {', '.join(kafka.list_topics())}")
    except BaseException:  # also Ctrl-C: detached daemons would outlive us
        for server in reversed(started):
            server.stop()
        raise
    print(f"all servers ready in {time.monotonic() - began:.1f}s")

    state: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions.pinned_versions(),
        "servers": {s.name: s.state() for s in started},
        "env": client_env(kafka, consul, jaeger, prometheus),
    }
    _write_state(state_dir, state)
    print(f"state: {state_dir / STATE_FILE}")
    for key, value in state["env"].items():
        print(f"export {key}={value}")
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
        print(f"{name:<11} {status:<6} pid={server['pid']}  {server['addresses']}")
    return 0 if all_alive else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m platform_native", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("build", help="fetch/build every server into the cache").set_defaults(
        func=cmd_build
    )

    up = commands.add_parser("up", help="start all servers as daemons")
    up.add_argument(
        "--state-dir", required=True, help="where state.json, configs, data and logs go"
    )
    up.add_argument(
        "--prometheus-config",
        help="prometheus.yml template (compose host names are replaced)",
    )
    up.add_argument("--topics", help="comma-separated Kafka topics to create")
    up.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions per created topic (default 3)",
    )
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the daemons recorded in state.json")
    down.add_argument("--state-dir", required=True)
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="show whether the recorded daemons are alive")
    status.add_argument("--state-dir", required=True)
    status.set_defaults(func=cmd_status)

    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except build.BuildError:
        print("error: build failed (details above)", file=sys.stderr)
        return 1
    except (ServerError, ToolError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
