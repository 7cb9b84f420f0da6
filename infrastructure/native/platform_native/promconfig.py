"""The shipped prometheus.yml, adapted to servers on loopback.

infrastructure/prometheus/prometheus.yml names Docker hosts (`consul:8500`,
`kong:8100`, ...). Natively, the hosts that exist are replaced by their
loopback addresses and the static jobs whose hosts do not exist (Kong, the
Kafka exporter) are dropped, so Prometheus never looks up a name outside
this machine. The Consul service-discovery job is kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

LOOPBACK = "127.0.0.1:"


def loopback_config(text: str, replacements: Mapping[str, str]) -> str:
    """Replace `host:port` literals, then drop jobs left with a non-loopback target."""
    for old, new in replacements.items():
        text = text.replace(old, new)
    config: dict[str, Any] = yaml.safe_load(text)
    config["scrape_configs"] = [job for job in config["scrape_configs"] if _all_loopback(job)]
    return yaml.safe_dump(config, sort_keys=False)


def _all_loopback(job: dict[str, Any]) -> bool:
    targets = [
        target for static in job.get("static_configs", []) for target in static.get("targets", [])
    ]
    servers = [sd["server"] for sd in job.get("consul_sd_configs", [])]
    return all(address.startswith(LOOPBACK) for address in targets + servers)
