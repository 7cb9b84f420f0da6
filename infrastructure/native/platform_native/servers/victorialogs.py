"""VictoriaLogs: the native platform's log store (OTLP logs in, LogsQL out).

Compose runs Grafana Loki, whose Go module is AGPL-licensed and so is never
built here; VictoriaLogs is Apache-2.0 and builds from the Go module proxy.
The collector's OTLP/HTTP log exporter posts to its ``/insert/opentelemetry``
endpoint (protobuf, as the exporter sends); a person or a test queries it
with LogsQL on ``/select/logsql/query``. It needs no config file: its
address, data path and retention are flags, and it has no phone-home.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from platform_native import build, gobuild, versions
from platform_native.probes import http_get, http_request
from platform_native.processes import HOST, free_ports
from platform_native.servers.base import Server

RETENTION = "7d"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    module, version = versions.VICTORIALOGS_MODULE, versions.VICTORIALOGS_VERSION
    source = gobuild.module_source(module, version, work, log)
    version_flag = (
        "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version="
        f"victoria-logs-v{version}"
    )
    gobuild.go_build(source, "./app/victoria-logs", out / "victoria-logs", log, version_flag)


def build_victorialogs() -> Path:
    """Return the path of the ``victoria-logs`` binary, building it once."""
    return build.ensure("victorialogs", versions.VICTORIALOGS_VERSION, _recipe) / "victoria-logs"


class VictoriaLogs(Server):
    """A single VictoriaLogs on loopback, storing in its work dir."""

    name = "victorialogs"
    version = versions.VICTORIALOGS_VERSION

    def __init__(
        self, workdir: Path | str, *, binary: Path | None = None, detach: bool = False
    ) -> None:
        super().__init__(workdir, detach=detach)
        self.binary = binary or self.build()
        (self.port,) = free_ports(1)

    @classmethod
    def build(cls) -> Path:
        return build_victorialogs()

    @property
    def url(self) -> str:
        """Base URL of the UI (``/select/vmui``) and the HTTP API."""
        return f"http://{HOST}:{self.port}"

    @property
    def otlp_endpoint(self) -> str:
        """Where the collector's OTLP/HTTP log exporter posts (it adds ``/v1/logs``)."""
        return f"{self.url}/insert/opentelemetry"

    @property
    def query_url(self) -> str:
        """LogsQL queries (``?query=...``): one JSON object per matching record and line."""
        return f"{self.url}/select/logsql/query"

    def ports(self) -> dict[str, int]:
        return {"http": self.port}

    def addresses(self) -> dict[str, str]:
        return {
            "url": self.url,
            "ui": f"{self.url}/select/vmui/",
            "query_url": self.query_url,
            "otlp_endpoint": self.otlp_endpoint,
        }

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"-httpListenAddr={HOST}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            f"-retentionPeriod={RETENTION}",
            "-loggerFormat=json",
        ]

    def health(self) -> bool:
        status, body = http_get(f"{self.url}/health")
        return status == 200 and body.strip() == b"OK"

    def query(self, logsql: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The log records matching a LogsQL query, newest last."""
        query = urllib.parse.urlencode({"query": logsql, "limit": str(limit)})
        status, body = http_request("GET", f"{self.query_url}?{query}")
        if status != 200:
            raise RuntimeError(f"LogsQL {logsql!r}: HTTP {status} {body[:300]!r}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]
