"""Every address of the running platform, printed at the end of `./deploy-all.sh up`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from platform_deploy.discovery import discover

DATABASES_HINT = "(each service's database: ./deploy-all.sh status)"


def docker_rows() -> list[tuple[str, str]]:
    """The ports docker-compose.infrastructure.yml publishes on 127.0.0.1."""
    kafka_port = os.environ.get("KAFKA_EXTERNAL_PORT", "9094")
    kong_port = os.environ.get("KONG_PROXY_PORT", "8000")
    postgres_port = os.environ.get("POSTGRES_PORT", "5432")
    return [
        ("Kong proxy", f"http://127.0.0.1:{kong_port}"),
        ("Kong admin", "http://127.0.0.1:8001"),
        ("Consul UI", "http://127.0.0.1:8500/ui/"),
        ("Jaeger UI", "http://127.0.0.1:16686"),
        ("Loki", "http://127.0.0.1:3100  (query it in Grafana: Explore > Loki)"),
        ("OTLP (HTTP)", "http://127.0.0.1:4318  (the OpenTelemetry Collector)"),
        ("Prometheus", "http://127.0.0.1:9090"),
        ("Alertmanager", "http://127.0.0.1:9093"),
        ("Alert log", "docker compose logs alert-log  (every alert; JSON lines in its volume)"),
        ("Grafana", "http://127.0.0.1:3000  (admin password in .env)"),
        ("Kafka UI", "http://127.0.0.1:8080"),
        ("Kafka", f"127.0.0.1:{kafka_port}"),
        ("PostgreSQL", f"postgresql://127.0.0.1:{postgres_port}  (superuser password in .env)"),
    ]


def native_rows(infra_state: Path, kong_config: Path) -> list[tuple[str, str]]:
    """The native servers' addresses, from the state.json that `up` wrote."""
    state = json.loads(infra_state.read_text())
    servers = state["servers"]
    # Every broker's address (--kafka-brokers 3), as the services get it.
    kafka = state.get("env", {}).get("KAFKA_BOOTSTRAP_SERVERS")
    return [
        ("Consul UI", servers["consul"]["addresses"]["ui"]),
        ("Jaeger UI", servers["jaeger"]["addresses"]["query_url"]),
        ("Prometheus", servers["prometheus"]["addresses"]["url"]),
        ("Alertmanager", servers["alertmanager"]["addresses"]["url"]),
        ("Alert log", f"{servers['alert-log']['addresses']['file']}  (every alert, JSON lines)"),
        ("Kafka", kafka or servers["kafka"]["addresses"]["bootstrap"]),
        ("PostgreSQL", f"{servers['postgres']['addresses']['url']}  {DATABASES_HINT}"),
        ("OTLP (HTTP)", servers["otelcol"]["addresses"]["otlp_http"]),
        ("Logs UI", servers["victorialogs"]["addresses"]["ui"]),
        ("Logs query", servers["victorialogs"]["addresses"]["query_url"]),
        ("Grafana", "not run natively (Docker mode only)"),
        ("Kong", f"not served natively (config: {kong_config})"),
    ]


def service_rows(services_dir: Path) -> list[tuple[str, str]]:
    """Each service's HTTP address."""
    return [
        (info.name, f"http://127.0.0.1:{info.http_port}  (health: /health/ready)")
        for info in discover(services_dir)
    ]


def lines(rows: list[tuple[str, str]]) -> list[str]:
    """Aligned ``label  address`` lines."""
    width = max((len(label) for label, _ in rows), default=0)
    return [f"  {label:<{width}}  {address}" for label, address in rows]
