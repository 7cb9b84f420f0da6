"""How native servers run the config files Compose mounts: the one templating rule.

A native server starts from the very file docker-compose.infrastructure.yml
mounts, unchanged. Only what must differ on a shared host differs: listen
addresses, ports and data paths (loopback, free ports, a work directory), and
the addresses of the other servers. Nothing else is ever set natively, so the
shipped files are what runs in both modes.

Those differences reach each server through its own way of layering
configuration, never through a second copy of the config:

* Consul: ``-config-file=infrastructure/consul/consul.hcl
  -config-file=<workdir>/native.json``; Consul merges later files over
  earlier ones.
* Jaeger: ``--config=file:infrastructure/jaeger/config.yaml
  --config=file:<workdir>/native.json``; the collector merges configs in
  order (maps joined, lists replaced).
* The OpenTelemetry Collector: the same two ``--config`` files as Jaeger
  (infrastructure/otel-collector/config.yaml, then ``native.json``). Its log
  exporter's endpoint is the log store's address: Loki's ``/otlp`` in
  Compose, VictoriaLogs' ``/insert/opentelemetry`` natively (Loki is AGPL and
  never built here, see versions.py).
* Prometheus has no second layer, so it runs a copy of
  infrastructure/prometheus/prometheus.yml in which each Compose address
  (``consul:8500``) is replaced by the native server's loopback address. A
  Compose host with no native server (``kong:8100``, ``kafka-exporter:9308``)
  becomes ``127.0.0.1:1``, where nothing listens: its job shows as down and
  no name is ever looked up.

:func:`write_overlay` refuses any setting that is not an address, port or
path, so the overlays cannot grow into a second config.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

INFRASTRUCTURE = Path(__file__).resolve().parents[2]
CONSUL_CONFIG = INFRASTRUCTURE / "consul" / "consul.hcl"
CONSUL_ACL_CONFIG = INFRASTRUCTURE / "consul" / "secure" / "acl.hcl"  # Consul(acl=True)
JAEGER_CONFIG = INFRASTRUCTURE / "jaeger" / "config.yaml"
PROMETHEUS_CONFIG = INFRASTRUCTURE / "prometheus" / "prometheus.yml"
OTELCOL_CONFIG = INFRASTRUCTURE / "otel-collector" / "config.yaml"
OTELCOL_BUILDER = INFRASTRUCTURE / "otel-collector" / "builder.yaml"  # ocb's manifest
PROMETHEUS_RULES = INFRASTRUCTURE / "prometheus" / "rules"  # rule_files: [rules/*.yml]
ALERTMANAGER_CONFIG = INFRASTRUCTURE / "alertmanager" / "alertmanager.yml"
ALERT_LOG_SCRIPT = INFRASTRUCTURE / "alertmanager" / "alert_log.py"

# The only leaf settings an overlay may hold: addresses, ports, paths.
OVERLAY_KEYS = frozenset(
    {
        # Jaeger and the OpenTelemetry Collector: endpoints.
        "endpoint",
        "host",
        "port",
        # Consul addresses, the ports block, and the data directory.
        "bind_addr",
        "client_addr",
        "advertise_addr",
        "data_dir",
        "http",
        "https",
        "dns",
        "grpc",
        "grpc_tls",
        "serf_lan",
        "serf_wan",
        "server",
    }
)

# Where Compose hosts without a native server point: nothing listens on port 1.
UNREACHABLE = "127.0.0.1:1"

# `host:port` with a host name (not an IP), as Compose service addresses are
# written; YAML keys never match because they need a space after the colon.
_COMPOSE_ADDRESS = re.compile(r"(?<![\w.:/-])([a-z][a-z0-9-]*):([0-9]{1,5})\b")


def _leaves(settings: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, leaf key) of every scalar in nested dicts and lists."""
    if isinstance(settings, Mapping):
        for key, value in settings.items():
            if isinstance(value, Mapping | list):
                yield from _leaves(value, f"{path}.{key}")
            else:
                yield f"{path}.{key}", str(key)
    elif isinstance(settings, list):
        for index, value in enumerate(settings):
            yield from _leaves(value, f"{path}[{index}]")


def overlay_violations(settings: Mapping[str, Any]) -> list[str]:
    """Paths of settings in an overlay that are not an address, port or path."""
    return [path for path, key in _leaves(settings) if key not in OVERLAY_KEYS]


def write_overlay(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write the native overlay as JSON (both Consul and the collector read JSON)."""
    violations = overlay_violations(settings)
    if violations:
        raise ValueError(f"native overlay may set only addresses, ports and paths: {violations}")
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def compose_addresses(text: str) -> list[str]:
    """Every Compose ``host:port`` address named in a config text, in order, once."""
    found = [f"{host}:{port}" for host, port in _COMPOSE_ADDRESS.findall(text)]
    return list(dict.fromkeys(found))


def replace_addresses(text: str, addresses: Mapping[str, str]) -> str:
    """Replace each Compose address by its native one (UNREACHABLE when it has none)."""

    def native(match: re.Match[str]) -> str:
        return addresses.get(match.group(0), UNREACHABLE)

    return _COMPOSE_ADDRESS.sub(native, text)
