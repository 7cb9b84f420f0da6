"""Run the platform's real servers natively, without Docker.

Kafka (one broker, or three: ``up --kafka-brokers 3``), Consul, Jaeger v2,
Prometheus, the OpenTelemetry Collector and VictoriaLogs (plus the decK CLI)
are built from the package registries at pinned versions (versions.py) into
a cache outside the repository (~/.cache/event-platform) and started on
127.0.0.1 with free ports, from the same config files Compose mounts
(configs.py). PostgreSQL is Debian's
postgresql-15 package (apt.py installs it as root), run the same way.

What it needs: Python 3.11+ and only its standard library (it runs before any
virtualenv exists); Java 17+ and Maven for Kafka; Go 1.26+ (Prometheus 3.15
needs it; GOTOOLCHAIN=local, so no other toolchain is fetched) for Consul,
Jaeger, Prometheus, decK, the collector and VictoriaLogs. Nothing else is
downloaded::

    PYTHONPATH=infrastructure/native python3 -m platform_native build
    PYTHONPATH=infrastructure/native python3 -m platform_native up --state-dir .platform/infra

Modules: servers/ (one per server: build, configure, start, health, stop),
build.py (cached, locked builds), gobuild.py (Go recipes), configs.py (the
shipped configs and the one rule for what differs natively), processes.py
(ports, process groups, clean-up at exit), probes.py (readiness checks),
progress.py (step lines and heartbeats), services.py (the teams' services as
local processes), installer.py (their virtualenvs, made with uv: the one module
that needs more than the standard library), tools.py (running the config
checkers), databases.py (each service's database and role), apt.py (Debian
packages). Only what ``deploy-all.sh`` runs is here; what only the tests start
(the private Docker engine, kube-apiserver with etcd, Helm, actionlint) is in
tests/harness/.
"""

from platform_native.build import BuildError
from platform_native.servers import (
    BUILDS,
    Consul,
    Jaeger,
    Kafka,
    OtelCollector,
    Postgres,
    Prometheus,
    Server,
    ServerError,
    ToolError,
    VictoriaLogs,
    deck_file_validate,
    free_ports,
    kill_registered,
    listening_sockets,
    promtool_check_config,
    run_deck,
    running,
    stop_process_group,
)
from platform_native.versions import cache_dir, pinned_versions

__all__ = [
    "BUILDS",
    "BuildError",
    "Consul",
    "Jaeger",
    "Kafka",
    "OtelCollector",
    "Postgres",
    "Prometheus",
    "Server",
    "ServerError",
    "ToolError",
    "VictoriaLogs",
    "cache_dir",
    "deck_file_validate",
    "free_ports",
    "kill_registered",
    "listening_sockets",
    "pinned_versions",
    "promtool_check_config",
    "run_deck",
    "running",
    "stop_process_group",
]
