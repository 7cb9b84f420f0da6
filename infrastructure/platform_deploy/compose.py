"""The services' Compose file: one entry per service, on the infrastructure's network."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from platform_deploy import databases
from platform_deploy.discovery import discover
from platform_native.databases import url_file

HEADER = "# Written by ./deploy-all.sh from services/*/pyproject.toml; do not edit.\n"
# pip's usual settings reach the image's build stage as build arguments, each taken
# from the environment when set (./deploy-all.sh serves the chassis wheel as
# PIP_FIND_LINKS on loopback, hence the host network for the build).
PIP_BUILD_ARGS = [
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
]
# Longer than the chassis' SHUTDOWN_GRACE_SECONDS (15 s): Docker's default of 10 s
# would SIGKILL a service still finishing its batches in flight.
STOP_GRACE_PERIOD = "20s"


def _project_version(directory: Path) -> str:
    return str(tomllib.loads((directory / "pyproject.toml").read_text())["project"]["version"])


# Where a service with a database finds its DSN: a Compose secret, never the environment.
DSN_SECRET = "database-url"


def services_compose(services_dir: Path, state_dir: Path) -> dict[str, Any]:
    """The Compose document for every service, joined to the platform network; a service
    with a database gets its DSN file (written by `databases`) as a secret."""
    services: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for info in discover(services_dir):
        services[info.name] = {
            "build": {"context": str(info.directory), "network": "host", "args": PIP_BUILD_ARGS},
            "image": f"event-platform/{info.name}:{_project_version(info.directory)}",
            "restart": "unless-stopped",
            "stop_grace_period": STOP_GRACE_PERIOD,
            "environment": {
                "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
                "CONSUL_HTTP_ADDR": "http://consul:8500",
                # Traces and logs go to the collector only (it forwards them).
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
                "HTTP_PORT": str(info.http_port),
            },
            "ports": [f"127.0.0.1:{info.http_port}:{info.http_port}"],
            # Not on the collector: telemetry never holds a service back (its
            # exports wait in a bounded queue, or are dropped, until it is up).
            "depends_on": {name: {"condition": "service_healthy"} for name in ("kafka", "consul")},
            "deploy": {"resources": {"limits": {"memory": "512m"}}},
            "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
            "networks": ["platform"],
        }
        if info.database:
            name = f"{info.name}-{DSN_SECRET}"
            secrets[name] = {"file": str(url_file(databases.compose_secrets(state_dir), info.name))}
            service = services[info.name]
            service["secrets"] = [{"source": name, "target": DSN_SECRET}]
            service["environment"]["DATABASE_URL_FILE"] = f"/run/secrets/{DSN_SECRET}"
            service["depends_on"]["postgres"] = {"condition": "service_healthy"}
    return {"services": services, **({"secrets": secrets} if secrets else {})}


def write(services_dir: Path, out: Path) -> int:
    """Write the file (beside the state the DSN files are in); return how many services."""
    document = services_compose(services_dir, out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(HEADER + yaml.safe_dump(document, sort_keys=False))
    return len(document["services"])
