"""The consumer-group lag exporter (infrastructure/lag_exporter) as a native server.

It stands in for Compose's kafka-exporter, which the Go module proxy does not
serve (infrastructure/lag_exporter/__init__.py says why it exists). Its code
runs from the repository; its packages (aiokafka, prometheus-client, pinned
in versions.py) live in a virtualenv built once into the cache with pip, so it
needs neither the repository's .venv nor anything but PyPI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platform_native import build, configs, versions
from platform_native.probes import http_get
from platform_native.processes import HOST
from platform_native.servers.loopback_http import LoopbackHttpServer


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """A virtualenv in ``out`` with the pinned packages.

    The finished directory is renamed into place afterwards: that breaks the
    shebangs of its scripts, but ``bin/python`` (a symlink) and its
    site-packages keep working, and that is all the exporter runs.
    """
    log.run([sys.executable, "-m", "venv", "--clear", str(out)], cwd=work)
    pip = [str(out / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    log.run([*pip, "install", "--quiet", *versions.LAG_EXPORTER_REQUIREMENTS], cwd=work)


def build_lag_exporter() -> Path:
    """Return the virtualenv that runs the exporter, building it once."""
    return build.ensure("lag-exporter", versions.LAG_EXPORTER_VERSION, _recipe)


class LagExporter(LoopbackHttpServer):
    """Serves kafka-exporter's lag metrics for one Kafka, read every ``interval`` s."""

    name = "lag-exporter"
    version = versions.LAG_EXPORTER_VERSION

    def __init__(
        self,
        workdir: Path | str,
        *,
        bootstrap: str,
        interval: float = 5.0,
        venv: Path | None = None,
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        self.venv = venv or self.build()
        self.bootstrap = bootstrap
        self.interval = interval

    @classmethod
    def build(cls) -> Path:
        return build_lag_exporter()

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:PORT/metrics``."""
        return f"{self.url}/metrics"

    def addresses(self) -> dict[str, str]:
        return {"metrics_url": self.metrics_url}

    def compose_addresses(self) -> dict[str, str]:
        # Prometheus scrapes Compose's kafka-exporter there; natively, this one.
        return {"kafka-exporter:9308": self.address}

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(configs.INFRASTRUCTURE)}

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin" / "python"),
            "-m",
            "lag_exporter",
            f"--kafka={self.bootstrap}",
            f"--listen={HOST}:{self.port}",
            f"--interval={self.interval}",
        ]

    def health(self) -> bool:
        """Ready once a read of Kafka has succeeded (``kafka_brokers`` above 0)."""
        status, body = http_get(self.metrics_url)
        return status == 200 and b"\nkafka_brokers 0.0" not in b"\n" + body
