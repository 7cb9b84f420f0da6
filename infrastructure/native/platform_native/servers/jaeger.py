"""Jaeger v2 (an OpenTelemetry Collector distribution), run from the shipped config.yaml.

The process reads infrastructure/jaeger/config.yaml, the file Compose mounts,
then ``native.json`` with only its loopback endpoints (see
platform_native.configs). Built from the Go module
github.com/jaegertracing/jaeger (module v1.76.0 is Jaeger 2.13.0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from platform_native import build, configs, gobuild, versions
from platform_native.probes import http_get, tcp_accepts
from platform_native.processes import HOST, free_ports
from platform_native.servers.base import OtlpReceiver, Server


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    module, version = versions.JAEGER_MODULE, versions.JAEGER_MODULE_VERSION
    source = gobuild.module_source(module, version, work, log)
    version_flag = (
        "-X github.com/jaegertracing/jaeger/internal/version.latestVersion="
        f"v{versions.JAEGER_VERSION}"
    )
    gobuild.go_build(source, "./cmd/jaeger", out / "jaeger", log, ldflags=version_flag)


def build_jaeger() -> Path:
    """Return the path of the ``jaeger`` (v2) binary, building it once."""
    return build.ensure("jaeger", versions.JAEGER_VERSION, _recipe) / "jaeger"


def config_args(*paths: Path) -> list[str]:
    """``--config=file:<path>`` for each path, merged by the collector in order."""
    return [f"--config=file:{path}" for path in paths]


def endpoint(port: int) -> dict[str, str]:
    """A collector listener on loopback, as its config writes it."""
    return {"endpoint": f"{HOST}:{port}"}


def collector_overlay(
    otlp_grpc_port: int, otlp_http_port: int, metrics_port: int
) -> dict[str, Any]:
    """What every OpenTelemetry Collector distribution here (Jaeger v2, otelcol) listens on
    natively: OTLP in, and its own metrics for Prometheus, on loopback."""
    prometheus = {"host": HOST, "port": metrics_port}
    return {
        "service": {
            "telemetry": {
                "metrics": {"readers": [{"pull": {"exporter": {"prometheus": prometheus}}}]}
            }
        },
        "receivers": {
            "otlp": {
                "protocols": {"grpc": endpoint(otlp_grpc_port), "http": endpoint(otlp_http_port)}
            }
        },
    }


class Jaeger(OtlpReceiver, Server):
    """Jaeger v2 with OTLP in and memory storage, from the shipped configuration."""

    name = "jaeger"
    version = versions.JAEGER_VERSION

    def __init__(
        self,
        workdir: Path | str,
        *,
        binary: Path | None = None,
        config: Path = configs.JAEGER_CONFIG,
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        self.binary = binary or self.build()
        self.config = config
        (
            self.otlp_grpc_port,
            self.otlp_http_port,
            self.query_http_port,
            self.query_grpc_port,
            self.health_port,
            self.metrics_port,
        ) = free_ports(6)
        self.overlay_path = self.workdir / "native.json"

    @classmethod
    def build(cls) -> Path:
        return build_jaeger()

    @property
    def query_url(self) -> str:
        """Base URL of the UI and query API (``/api/services``, ``/api/v3/...``)."""
        return f"http://{HOST}:{self.query_http_port}"

    @property
    def metrics_url(self) -> str:
        """Jaeger's own Prometheus metrics."""
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        """healthcheckv2's status endpoint."""
        return f"http://{HOST}:{self.health_port}/status"

    def ports(self) -> dict[str, int]:
        return {
            "otlp_grpc": self.otlp_grpc_port,
            "otlp_http": self.otlp_http_port,
            "query_http": self.query_http_port,
            "query_grpc": self.query_grpc_port,
            "health": self.health_port,
            "metrics": self.metrics_port,
        }

    def addresses(self) -> dict[str, str]:
        return {
            "otlp_http": self.otlp_http,
            "otlp_grpc": self.otlp_grpc,
            "query_url": self.query_url,
            "metrics_url": self.metrics_url,
            "health_url": self.health_url,
        }

    def compose_addresses(self) -> dict[str, str]:
        container_ports = {
            "otlp_grpc": 4317,
            "otlp_http": 4318,
            "query_http": 16686,
            "query_grpc": 16685,
            "health": 13133,
            "metrics": 8888,
        }
        ports = self.ports()
        return {f"jaeger:{c}": f"{HOST}:{ports[role]}" for role, c in container_ports.items()}

    def overlay(self) -> dict[str, Any]:
        """The native layer over config.yaml: every endpoint on loopback, free ports."""
        return {
            **collector_overlay(self.otlp_grpc_port, self.otlp_http_port, self.metrics_port),
            "extensions": {
                "healthcheckv2": {"http": endpoint(self.health_port)},
                "jaeger_query": {
                    "http": endpoint(self.query_http_port),
                    "grpc": endpoint(self.query_grpc_port),
                },
            },
        }

    def configure(self) -> None:
        configs.write_overlay(self.overlay_path, self.overlay())

    def command(self) -> list[str]:
        return [str(self.binary), *config_args(self.config, self.overlay_path)]

    def health(self) -> bool:
        status, _ = http_get(f"{self.query_url}/api/services")
        return (
            status == 200 and tcp_accepts(self.otlp_http_port) and tcp_accepts(self.otlp_grpc_port)
        )
