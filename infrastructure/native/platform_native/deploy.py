"""The steps of ./deploy-all.sh that are easier to get right in Python than in shell.

Each subcommand is one step of the shell script and works the same whether
the platform runs in Docker or as local processes: it talks to Kafka and
Consul through their published loopback ports.

    python -m platform_native.deploy topics   --bootstrap 127.0.0.1:9094
    python -m platform_native.deploy kong     --out infrastructure/kong/kong.generated.yml
    python -m platform_native.deploy start    --state-dir .platform   # native services
    python -m platform_native.deploy wait     --consul 127.0.0.1:8500
    python -m platform_native.deploy status   --consul 127.0.0.1:8500
    python -m platform_native.deploy stop     --state-dir .platform
    python -m platform_native.deploy compose  --out .platform/docker-compose.services.yml
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from platform_native import servers
from platform_native.services import ServiceInfo, ServiceProcess, install, passing_instances

REPO = Path(__file__).resolve().parents[3]
SERVICES_FILE = "services.json"
# On the local platform every request is traced (a production service samples a tenth),
# and logs stay in the services' log files: natively there is no log store yet.
LOCAL_SERVICE_ENV = {
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "OTEL_LOGS_EXPORTER": "none",
    "LOG_FORMAT": "json",
}


def discover(services_dir: Path) -> list[ServiceInfo]:
    """Every directory under services/ that declares itself in [tool.event-platform]."""
    found = []
    for pyproject in sorted(services_dir.glob("*/pyproject.toml")):
        try:
            found.append(ServiceInfo.read(pyproject.parent))
        except KeyError:
            continue  # not a service of this platform
    return found


# ----------------------------------------------------------------------- topics


async def _create_topics(bootstrap: str, wanted: dict[str, int]) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, wanted[name], replication_factor=1) for name in missing]
            )
        return missing
    finally:
        await admin.close()


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the topics every service declares; existing ones are left alone."""
    wanted: dict[str, int] = {}
    for info in discover(args.services_dir):
        for topic in info.topics:
            wanted[topic] = max(wanted.get(topic, 0), info.partitions)
    created = asyncio.run(_create_topics(args.bootstrap, wanted))
    print(f"topics: {len(wanted)} declared, {len(created)} created {' '.join(created)}".rstrip())
    return 0


# ------------------------------------------------------------------------- kong


def cmd_kong(args: argparse.Namespace) -> int:
    """Merge the base config with every service's snippet and validate the result.

    Exit status 0 means the file is valid; the last line says whether it changed,
    so the caller reloads Kong only when it did.
    """
    snippets = [str(i.kong_snippet) for i in discover(args.services_dir) if i.kong_snippet]
    out: Path = args.out
    before = _digest(out)
    merged = out.with_name(f".{out.name}.tmp")
    deck = [*args.deck.split(), "--analytics=false"] if args.deck else None
    run = _deck_runner(deck)
    run("file", "merge", "-o", str(merged), str(args.base), *snippets)
    run("file", "validate", str(merged))
    os.replace(merged, out)
    changed = _digest(out) != before
    print(f"kong: {len(snippets)} snippets merged and validated into {out}")
    print("kong: changed" if changed else "kong: unchanged")
    return 0


def cmd_kong_load(args: argparse.Namespace) -> int:
    """Load the merged config into a running DB-less Kong through its admin API.

    `check_hash=1` makes Kong answer 304 and keep its state when the config is
    unchanged, so a second `up` changes nothing.
    """
    import httpx

    with args.config.open("rb") as config:
        response = httpx.post(
            f"{args.admin}/config",
            params={"check_hash": "1"},
            files={"config": (args.config.name, config, "application/x-yaml")},
            timeout=30,
        )
    if response.status_code not in (200, 201, 304):
        print(f"kong: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    print("kong: config unchanged" if response.status_code == 304 else "kong: config loaded")
    return 0


def _deck_runner(command: list[str] | None) -> Callable[..., Any]:
    """decK from the cache (native) or from a given command (its Docker image)."""
    if command is None:
        return servers.run_deck
    import subprocess

    def run(*deck_args: str) -> Any:
        return subprocess.run([*command, *deck_args], check=True, cwd=REPO)

    return run


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


# ---------------------------------------------------- native services (start/stop)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _alive(record: dict[str, Any]) -> bool:
    """The recorded process is alive and still runs the service's script (no reused pid)."""
    pid = int(record["pid"])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return servers.pid_alive(pid) and record["script"] in cmdline.split("\0")


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((servers.HOST, port)) == 0


def cmd_start(args: argparse.Namespace) -> int:
    """Install and start every service as a detached process, once."""
    state_dir: Path = args.state_dir
    infra = _read_json(state_dir / "infra" / "state.json")
    if not infra:
        print("the native infrastructure is not running (no state.json)", file=sys.stderr)
        return 1
    records = _read_json(state_dir / SERVICES_FILE)
    for info in discover(args.services_dir):
        record = records.get(info.name)
        if record and _alive(record):
            print(f"{info.name}: already running (pid {record['pid']}, port {info.http_port})")
            continue
        if _port_in_use(info.http_port):
            print(
                f"{info.name}: port {info.http_port} is taken by another program", file=sys.stderr
            )
            return 1
        print(f"{info.name}: installing into {info.directory / '.venv'}")
        env = {
            **infra["env"],
            "CONSUL_HTTP_ADDR": f"http://{infra['env']['CONSUL_HTTP_ADDR']}",
            **LOCAL_SERVICE_ENV,
        }
        log_path = state_dir / "logs" / f"{info.name}.log"
        script = install(info.directory, wheels=REPO / ".wheels")
        process = ServiceProcess(info, script, env, log_path, info.http_port).start()
        records[info.name] = {
            "pid": process.pid,
            "script": str(script),
            "port": info.http_port,
            "log": str(log_path),
        }
        _write_json(state_dir / SERVICES_FILE, records)
        print(f"{info.name}: started (pid {process.pid}, port {info.http_port})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """SIGTERM each recorded service (graceful drain), SIGKILL what outlives the grace."""
    path = args.state_dir / SERVICES_FILE
    records = _read_json(path)
    for name, record in records.items():
        if _alive(record):
            servers.stop_process_group(int(record["pid"]), timeout=30)
            print(f"{name}: stopped")
    path.unlink(missing_ok=True)
    return 0


# ------------------------------------------------------------------ wait/status


def _health(consul: str, names: list[str]) -> dict[str, str]:
    health = {}
    for name in names:
        try:
            passing = passing_instances(consul, name)
        except OSError as error:
            health[name] = f"unknown (Consul unreachable: {error})"
            continue
        health[name] = f"passing ({len(passing)} instance(s))" if passing else "not passing"
    return health


def cmd_wait(args: argparse.Namespace) -> int:
    """Wait until every service has a passing instance in Consul."""
    names = [info.name for info in discover(args.services_dir)]
    deadline = time.monotonic() + args.timeout
    while True:
        health = _health(args.consul, names)
        waiting = [name for name, state in health.items() if not state.startswith("passing")]
        if not waiting:
            print(f"all {len(names)} services passing in Consul")
            return 0
        if time.monotonic() > deadline:
            for name in waiting:
                print(f"{name}: {health[name]} after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(1)


def cmd_status(args: argparse.Namespace) -> int:
    """Print each service's health in Consul; exit 1 when any is not passing."""
    health = _health(args.consul, [info.name for info in discover(args.services_dir)])
    for name, state in health.items():
        print(f"{name:<30} {state}")
    return 0 if all(state.startswith("passing") for state in health.values()) else 1


# -------------------------------------------------------------------------- new


def cmd_new(args: argparse.Namespace) -> int:
    """Create a service from the template with cruft, so `cruft update` can follow it.

    The template is recorded by its path relative to the service (the repository
    it lives in), so `cruft update` works in any clone. Without a terminal every
    answer not given is the default.
    """
    from cookiecutter.exceptions import CookiecutterException
    from cruft import create

    answers = dict(answer.split("=", 1) for answer in args.answers)
    args.services_dir.mkdir(parents=True, exist_ok=True)
    try:
        project = create(
            str(REPO),
            output_dir=args.services_dir,
            extra_context={**answers, "service_name": args.name},
            no_input=not sys.stdin.isatty(),
        )
    except CookiecutterException as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    state_path = project / ".cruft.json"
    state = json.loads(state_path.read_text())
    state["template"] = os.path.relpath(REPO, project)
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    print(f"{project}: created from the template at {state['commit'][:12]}")
    return 0


# ---------------------------------------------------------------------- compose


def cmd_compose(args: argparse.Namespace) -> int:
    """Write a compose file for the services, joined to the infrastructure's network."""
    services: dict[str, Any] = {}
    for info in discover(args.services_dir):
        version = _project_version(info.directory)
        services[info.name] = {
            "build": {"context": str(info.directory)},
            "image": f"event-platform/{info.name}:{version}",
            "restart": "unless-stopped",
            "environment": {
                "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
                "CONSUL_HTTP_ADDR": "http://consul:8500",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
                "HTTP_PORT": str(info.http_port),
            },
            "ports": [f"127.0.0.1:{info.http_port}:{info.http_port}"],
            "depends_on": {
                name: {"condition": "service_healthy"} for name in ("kafka", "consul", "jaeger")
            },
            "deploy": {"resources": {"limits": {"memory": "512m"}}},
            "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            "networks": ["platform"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by ./deploy-all.sh from services/*/pyproject.toml; do not edit.\n"
    args.out.write_text(header + yaml.safe_dump({"services": services}, sort_keys=False))
    print(f"compose: {len(services)} services in {args.out}")
    return 0


def _project_version(directory: Path) -> str:
    import tomllib

    return str(tomllib.loads((directory / "pyproject.toml").read_text())["project"]["version"])


# ------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_native.deploy")
    parser.add_argument("--services-dir", type=Path, default=REPO / "services")
    commands = parser.add_subparsers(dest="command", required=True)

    topics = commands.add_parser("topics", help=cmd_topics.__doc__)
    topics.add_argument("--bootstrap", required=True)
    topics.set_defaults(func=cmd_topics)

    kong = commands.add_parser("kong", help=cmd_kong.__doc__)
    kong.add_argument("--base", type=Path, default=REPO / "infrastructure/kong/kong.yml")
    kong.add_argument("--out", type=Path, default=REPO / "infrastructure/kong/kong.generated.yml")
    kong.add_argument("--deck", help="decK command to use instead of the cached binary")
    kong.set_defaults(func=cmd_kong)

    kong_load = commands.add_parser("kong-load", help=cmd_kong_load.__doc__)
    kong_load.add_argument("--admin", default="http://127.0.0.1:8001")
    kong_load.add_argument(
        "--config", type=Path, default=REPO / "infrastructure/kong/kong.generated.yml"
    )
    kong_load.set_defaults(func=cmd_kong_load)

    for name, func in (("start", cmd_start), ("stop", cmd_stop)):
        sub = commands.add_parser(name, help=func.__doc__)
        sub.add_argument("--state-dir", type=Path, required=True)
        sub.set_defaults(func=func)

    for name, func in (("wait", cmd_wait), ("status", cmd_status)):
        sub = commands.add_parser(name, help=func.__doc__)
        sub.add_argument("--consul", required=True, help="Consul HTTP host:port")
        sub.add_argument("--timeout", type=float, default=120.0)
        sub.set_defaults(func=func)

    new = commands.add_parser("new", help=cmd_new.__doc__)
    new.add_argument("name")
    new.add_argument("answers", nargs="*", help="key=value answers to the template")
    new.set_defaults(func=cmd_new)

    compose = commands.add_parser("compose", help=cmd_compose.__doc__)
    compose.add_argument("--out", type=Path, required=True)
    compose.set_defaults(func=cmd_compose)

    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
