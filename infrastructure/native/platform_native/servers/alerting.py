"""The alerting chain of the native platform, created together.

The lag exporter gives Prometheus the consumer-group lag, Prometheus sends
alerts to Alertmanager, Alertmanager's receivers post to the alert log.
Prometheus itself is created by the caller with these as peers, so its
Compose addresses (``alertmanager:9093``, ``kafka-exporter:9308``) point at them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from platform_native.servers.alert_log import AlertLog
from platform_native.servers.alertmanager import Alertmanager
from platform_native.servers.base import Server
from platform_native.servers.kafka import Kafka
from platform_native.servers.lag_exporter import LagExporter


@dataclass
class Alerting:
    """The three servers, in the order they start."""

    lag_exporter: LagExporter
    alert_log: AlertLog
    alertmanager: Alertmanager

    NAMES: ClassVar[tuple[str, ...]] = ("lag-exporter", "alert-log", "alertmanager")

    @classmethod
    def create(
        cls,
        state_dir: Path,
        kafka: Kafka | str,
        *,
        detach: bool = False,
        alertmanager_config: str | None = None,
    ) -> Alerting:
        """Each in ``<state_dir>/<name>``; ``alertmanager_config`` replaces the shipped file.

        ``kafka``: the node, or a cluster's bootstrap (every broker's address)."""
        bootstrap = kafka if isinstance(kafka, str) else kafka.bootstrap
        lag_exporter = LagExporter(state_dir / "lag-exporter", bootstrap=bootstrap, detach=detach)
        alert_log = AlertLog(state_dir / "alert-log", detach=detach)
        manager = Alertmanager(
            state_dir / "alertmanager",
            peers=[alert_log],
            config_text=alertmanager_config,
            detach=detach,
        )
        return cls(lag_exporter, alert_log, manager)

    def __iter__(self) -> Iterator[Server]:
        return iter((self.lag_exporter, self.alert_log, self.alertmanager))

    def env(self) -> dict[str, str]:
        """What clients (./deploy-all.sh status) need: the Alertmanager's API."""
        return {"ALERTMANAGER_URL": self.alertmanager.url}
