"""The services as local processes (native mode): install once, start detached, stop.

Their secrets come from OpenBao: before they start, its bootstrap (platform_deploy.openbao)
gives each service (one added by `new` too) its policy, AppRole and KV path, and a
database role when it declares a database; a service gets only OpenBao's address and the
paths of its AppRole files (0600), never a password, token or secret id in its environment.

What runs is recorded in ``<state-dir>/services.json`` so a second `up`
changes nothing and `down` stops exactly those processes.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from platform_deploy import databases, openbao
from platform_deploy.discovery import REPO, discover
from platform_native import progress
from platform_native.databases import role_name
from platform_native.processes import HOST, pid_alive, stop_process_group
from platform_native.services import ServiceProcess, install

SERVICES_FILE = "services.json"
WHEELS = REPO / ".wheels"  # the chassis built from chassis/ (`make wheels`)
# On the local platform every request is traced (a production service samples 1 %).
# Logs are JSON lines in the services' log files and, through the collector, in the
# log store (the infrastructure's env points OTLP at the collector).
LOCAL_SERVICE_ENV = {
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "LOG_FORMAT": "json",
}


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
    return pid_alive(pid) and record["script"] in cmdline.split("\0")


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def start(services_dir: Path, state_dir: Path) -> int:
    """Install and start every service as a detached process, once."""
    infra = _read_json(state_dir / "infra" / "state.json")
    if not infra:
        print("the native infrastructure is not running (no state.json)", file=sys.stderr)
        return 1
    records = _read_json(state_dir / SERVICES_FILE)
    found = discover(services_dir)
    stateful = [info.name for info in found if info.database]
    try:
        url, credentials = openbao.native(state_dir, [info.name for info in found], stateful)
    except (openbao.BootstrapError, OSError) as error:
        print(f"OpenBao: {error}", file=sys.stderr)
        return 1
    progress.say(f"    OpenBao: a policy, an AppRole and a secret path per service ({url})")
    for info in found:
        record = records.get(info.name)
        if record and _alive(record):
            progress.say(f"    {info.name}: already running (pid {record['pid']})")
            continue
        if _port_in_use(info.http_port):
            print(
                f"{info.name}: port {info.http_port} is taken by another program", file=sys.stderr
            )
            return 1
        venv = info.directory / ".venv"
        progress.say(f"    {info.name}: installing into {venv}")
        with progress.heartbeat(f"installing {info.name}", f", into {venv}"):
            script = install(info.directory, wheels=WHEELS)
        env = {
            **infra["env"],
            "CONSUL_HTTP_ADDR": f"http://{infra['env']['CONSUL_HTTP_ADDR']}",
            **LOCAL_SERVICE_ENV,
            "LOG_LEVELS": f"{info.package}=DEBUG",  # the team's own lines, not the libraries'
        }
        env |= openbao.native_services_env(credentials[info.name], url)
        if info.database:  # the database's address; OpenBao gives short-lived credentials
            server = databases.native(state_dir)
            if not server.url_file(info.name).exists():
                print(f"{info.name}: no database yet (`databases` makes it)", file=sys.stderr)
                return 1
            env["DATABASE_URL"] = f"postgresql://{server.address}/{role_name(info.name)}"
            env["VAULT_DATABASE_ROLE"] = info.name
        log_path = state_dir / "logs" / f"{info.name}.log"
        process = ServiceProcess(info, script, env, log_path, info.http_port).start()
        records[info.name] = {
            "pid": process.pid,
            "script": str(script),
            "port": info.http_port,
            "log": str(log_path),
        }
        _write_json(state_dir / SERVICES_FILE, records)
        progress.say(f"    {info.name}: started (pid {process.pid}, log: {log_path})")
    return 0


def stop(state_dir: Path) -> int:
    """SIGTERM each recorded service (graceful drain), SIGKILL what outlives the grace."""
    path = state_dir / SERVICES_FILE
    for name, record in _read_json(path).items():
        if _alive(record):
            stop_process_group(int(record["pid"]), timeout=30)
            print(f"{name}: stopped")
    path.unlink(missing_ok=True)
    return 0
