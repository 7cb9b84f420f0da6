"""Run the platform's real servers natively, without Docker.

Kafka, Consul, Jaeger v2 and Prometheus (plus the decK CLI) are fetched or
built at pinned versions into a cache outside the repository and started on
127.0.0.1 with free ports. Only the standard library is used, so this works
before any virtualenv exists::

    PYTHONPATH=infrastructure/native python -m platform_native build
    PYTHONPATH=infrastructure/native python -m platform_native up --state-dir .platform
"""

from platform_native.build import (
    BuildError,
    ensure_all,
    ensure_consul,
    ensure_deck,
    ensure_jaeger,
    ensure_kafka,
    ensure_prometheus,
)
from platform_native.servers import (
    Consul,
    Jaeger,
    Kafka,
    Prometheus,
    Server,
    ServerError,
    ToolError,
    consul_validate,
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
    "BuildError",
    "Consul",
    "Jaeger",
    "Kafka",
    "Prometheus",
    "Server",
    "ServerError",
    "ToolError",
    "cache_dir",
    "consul_validate",
    "deck_file_validate",
    "ensure_all",
    "ensure_consul",
    "ensure_deck",
    "ensure_jaeger",
    "ensure_kafka",
    "ensure_prometheus",
    "free_ports",
    "kill_registered",
    "listening_sockets",
    "pinned_versions",
    "promtool_check_config",
    "run_deck",
    "running",
    "stop_process_group",
]
