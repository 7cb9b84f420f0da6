"""The OpenTelemetry Collector, built with the Collector Builder, run from the shipped config.

Services send traces and logs here only (OTLP); the collector batches them,
limits its memory, and retries from bounded queues, so a service never waits
on Jaeger or the log store. The process reads
infrastructure/otel-collector/config.yaml, the file Compose mounts, then
``native.json`` with only loopback addresses: its own listeners on free ports,
Jaeger's OTLP/gRPC receiver and the log store's OTLP address (see
platform_native.configs).

Built by ocb (go.opentelemetry.io/collector/cmd/builder) from the manifest
infrastructure/otel-collector/builder.yaml; the cache key carries a digest of
that manifest, so adding a component rebuilds the binary.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from platform_native import build, configs, gobuild, versions
from platform_native.probes import http_get, tcp_accepts
from platform_native.processes import HOST, free_ports
from platform_native.servers.base import OtlpReceiver, Server
from platform_native.servers.jaeger import Jaeger, collector_overlay, config_args, endpoint

# The exporters named in config.yaml, by what they reach.
TRACES_EXPORTER = "otlp_grpc/jaeger"
LOGS_EXPORTER = "otlp_http/logs"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """Install ocb, let it generate and compile the collector, keep the binary."""
    tools = work / "bin"
    gobuild.go_install(versions.OCB_MODULE, versions.OTELCOL_VERSION, tools, work, log, "")
    manifest = work / "builder.yaml"  # its output_path (dist) is relative to the cwd
    shutil.copyfile(configs.OTELCOL_BUILDER, manifest)
    # ocb runs `go mod tidy` and `go build` itself, with this environment.
    builder = [*gobuild.NICE, str(tools / "builder"), "--config", str(manifest)]
    log.run(builder, work, gobuild.GO_ENV)
    shutil.copy2(work / "dist" / "otelcol", out / "otelcol")


def build_key() -> str:
    """The cache version: the release plus a digest of the builder manifest."""
    digest = hashlib.sha256(configs.OTELCOL_BUILDER.read_bytes()).hexdigest()[:10]
    return f"{versions.OTELCOL_VERSION}-{digest}"


def build_otelcol() -> Path:
    """Return the path of the ``otelcol`` binary, building it once."""
    return build.ensure("otelcol", build_key(), _recipe) / "otelcol"


class OtelCollector(OtlpReceiver, Server):
    """The platform's OpenTelemetry Collector: OTLP in, Jaeger and the log store out."""

    name = "otelcol"
    version = versions.OTELCOL_VERSION

    def __init__(
        self,
        workdir: Path | str,
        *,
        jaeger: Jaeger,
        logs_endpoint: str,
        binary: Path | None = None,
        config: Path = configs.OTELCOL_CONFIG,
        detach: bool = False,
    ) -> None:
        """``logs_endpoint`` is the log store's OTLP/HTTP base (the exporter adds /v1/logs)."""
        super().__init__(workdir, detach=detach)
        self.binary = binary or self.build()
        self.config = config
        self.jaeger = jaeger
        self.logs_endpoint = logs_endpoint
        (
            self.otlp_grpc_port,
            self.otlp_http_port,
            self.health_port,
            self.metrics_port,
        ) = free_ports(4)
        self.overlay_path = self.workdir / "native.json"

    @classmethod
    def build(cls) -> Path:
        return build_otelcol()

    @property
    def health_url(self) -> str:
        """The health_check extension: 200 once every pipeline runs."""
        return f"http://{HOST}:{self.health_port}/"

    @property
    def metrics_url(self) -> str:
        """The collector's own metrics (queue sizes, refused and dropped items)."""
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def ports(self) -> dict[str, int]:
        return {
            "otlp_grpc": self.otlp_grpc_port,
            "otlp_http": self.otlp_http_port,
            "health": self.health_port,
            "metrics": self.metrics_port,
        }

    def addresses(self) -> dict[str, str]:
        return {
            "otlp_http": self.otlp_http,
            "otlp_grpc": self.otlp_grpc,
            "health_url": self.health_url,
            "metrics_url": self.metrics_url,
        }

    def compose_addresses(self) -> dict[str, str]:
        container_ports = {"otlp_grpc": 4317, "otlp_http": 4318, "health": 13133, "metrics": 8888}
        ports = self.ports()
        return {
            f"otel-collector:{c}": f"{HOST}:{ports[role]}" for role, c in container_ports.items()
        }

    def overlay(self) -> dict[str, Any]:
        """The native layer over config.yaml: loopback listeners and backends, nothing else."""
        return {
            **collector_overlay(self.otlp_grpc_port, self.otlp_http_port, self.metrics_port),
            "extensions": {"health_check": endpoint(self.health_port)},
            "exporters": {
                TRACES_EXPORTER: endpoint(self.jaeger.otlp_grpc_port),
                LOGS_EXPORTER: {"endpoint": self.logs_endpoint},
            },
        }

    def configure(self) -> None:
        configs.write_overlay(self.overlay_path, self.overlay())

    def command(self) -> list[str]:
        return [str(self.binary), *config_args(self.config, self.overlay_path)]

    def health(self) -> bool:
        status, _ = http_get(self.health_url)
        return (
            status == 200 and tcp_accepts(self.otlp_http_port) and tcp_accepts(self.otlp_grpc_port)
        )
