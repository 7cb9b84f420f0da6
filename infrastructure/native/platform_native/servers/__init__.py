"""The platform's servers, one module each, behind one interface (servers.base.Server).

    kafka.py       Kafka (KRaft), jars from Maven Central
    consul.py      Consul, from infrastructure/consul/consul.hcl
    jaeger.py      Jaeger v2, from infrastructure/jaeger/config.yaml
    prometheus.py  Prometheus, from infrastructure/prometheus/prometheus.yml
    deck.py        decK, the offline checker of Kong's configuration

Each module holds its build recipe (cached by platform_native.build) and its
server class: build, configure, start, health, stop.
"""

from collections.abc import Callable
from pathlib import Path

from platform_native.probes import http_json
from platform_native.processes import (
    HOST,
    ProcessError,
    free_ports,
    group_members,
    kill_registered,
    listening_sockets,
    pid_alive,
    stop_process_group,
)
from platform_native.servers.base import Server, ServerError, running
from platform_native.servers.consul import Consul, build_consul
from platform_native.servers.deck import build_deck, deck_file_validate, run_deck
from platform_native.servers.jaeger import Jaeger, build_jaeger
from platform_native.servers.kafka import Kafka, build_kafka
from platform_native.servers.prometheus import (
    Prometheus,
    build_prometheus,
    promtool_check_config,
)
from platform_native.tools import ToolError

# Everything a cold start builds, in the order `platform_native build` runs it.
BUILDS: dict[str, Callable[[], Path]] = {
    "kafka": build_kafka,
    "consul": build_consul,
    "jaeger": build_jaeger,
    "prometheus": build_prometheus,
    "deck": build_deck,
}

__all__ = [
    "BUILDS",
    "HOST",
    "Consul",
    "Jaeger",
    "Kafka",
    "ProcessError",
    "Prometheus",
    "Server",
    "ServerError",
    "ToolError",
    "deck_file_validate",
    "free_ports",
    "group_members",
    "http_json",
    "kill_registered",
    "listening_sockets",
    "pid_alive",
    "promtool_check_config",
    "run_deck",
    "running",
    "stop_process_group",
]
