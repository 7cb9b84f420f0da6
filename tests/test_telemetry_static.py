"""Static checks of the telemetry path: the collector's config and build manifest, Loki, Grafana.

No container is started. The collector's config is what Compose mounts and
what the native collector runs (with an address overlay); its components must
all be in the native build's manifest, at one release shared with the
Compose image. Loki cannot run here (its Go module is AGPL, never built), so
its config gets structure checks against the collector and Compose; Grafana's
data sources must link traces to logs and logs to traces. The real
`otelcol validate` runs in test_infrastructure_static.py (marker `infra`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_native import versions
from platform_native.servers import otel_collector

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infrastructure"
COLLECTOR_CONFIG = INFRA / "otel-collector" / "config.yaml"
BUILDER_MANIFEST = INFRA / "otel-collector" / "builder.yaml"
TAIL_SAMPLING = INFRA / "otel-collector" / "tail-sampling.yaml"  # a layer over config.yaml
LOKI_CONFIG = INFRA / "loki" / "config.yaml"
DATASOURCES = INFRA / "grafana" / "provisioning" / "datasources" / "datasources.yml"
COMPOSE_FILE = REPO / "docker-compose.infrastructure.yml"

# Collector component type -> the Go module that provides it.
MODULES = {
    ("receivers", "otlp"): "go.opentelemetry.io/collector/receiver/otlpreceiver",
    ("processors", "batch"): "go.opentelemetry.io/collector/processor/batchprocessor",
    ("processors", "memory_limiter"): (
        "go.opentelemetry.io/collector/processor/memorylimiterprocessor"
    ),
    ("processors", "tail_sampling"): (
        "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
    ),
    ("exporters", "otlp_grpc"): "go.opentelemetry.io/collector/exporter/otlpexporter",
    ("exporters", "otlp_http"): "go.opentelemetry.io/collector/exporter/otlphttpexporter",
    ("extensions", "health_check"): (
        "github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"
    ),
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return dict(load(COLLECTOR_CONFIG))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load(COMPOSE_FILE)["services"])


def component_type(name: str) -> str:
    """`otlp_http/logs` -> `otlp_http`: a component id is its type, then an optional name."""
    return name.split("/", 1)[0]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repository path of a service's read-only bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = source[2:]
    return found


# ------------------------------------------------------------------ the collector


def test_collector_pipelines_limit_memory_batch_and_retry(collector: dict[str, Any]) -> None:
    service = collector["service"]
    assert set(service["pipelines"]) == {"traces", "logs"}
    for name, pipeline in service["pipelines"].items():
        assert pipeline["receivers"] == ["otlp"], name
        # The memory limiter must come first to refuse data before anything holds it.
        assert pipeline["processors"] == ["memory_limiter", "batch"], name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in collector[kind], f"{name}: {kind} {component} undefined"
        for exporter in pipeline["exporters"]:
            settings = collector["exporters"][exporter]
            queue = settings["sending_queue"]
            assert queue["enabled"] is True, exporter
            if queue.get("sizer", "requests") == "requests":  # batches
                assert 0 < queue["queue_size"] <= 10_000, exporter
            else:
                assert queue["sizer"] == "bytes", exporter
                heap = queue["queue_size"] * HEAP_PER_OTLP_BYTE
                assert 0 < heap < soft_limit(collector) / 2, exporter
            assert settings["retry_on_failure"]["enabled"] is True, exporter
    for extension in service["extensions"]:
        assert extension in collector["extensions"]
    limiter = collector["processors"]["memory_limiter"]
    assert 0 < limiter["spike_limit_mib"] < limiter["limit_mib"]


# What a line (or span) held in an exporter's queue costs in the collector's heap per
# byte of its OTLP: measured at 0.165.0, 248,000 log lines like the platform's (32 MiB
# of OTLP, a full logs queue, the log store away) took 105 MB of heap.
HEAP_PER_OTLP_BYTE = 3.2


def soft_limit(collector: dict[str, Any]) -> int:
    """Bytes of heap above which memory_limiter refuses data (every pipeline's)."""
    limiter = collector["processors"]["memory_limiter"]
    return int((limiter["limit_mib"] - limiter["spike_limit_mib"]) * 2**20)


def test_collector_holds_logs_in_a_queue_bounded_in_bytes(collector: dict[str, Any]) -> None:
    """While the log store is away the logs exporter holds them, up to a size in bytes.

    Counted in requests (the default), a queue of batches of up to send_batch_max_size
    lines has no useful memory bound; in bytes, full, it takes under half of
    memory_limiter's soft limit, so a log store outage never makes the collector refuse
    traces, and it still holds the reliability test's outage (10,000 lines, under 2 MiB
    of OTLP: tests/test_telemetry_backends.py) many times over.
    """
    queue = collector["exporters"][otel_collector.LOGS_EXPORTER]["sending_queue"]
    assert queue["sizer"] == "bytes"
    assert queue["queue_size"] >= 16 * 2**20  # 8 times the test's outage, at least
    assert queue["queue_size"] * HEAP_PER_OTLP_BYTE < soft_limit(collector) / 2


def test_collector_sends_traces_to_jaeger_and_logs_to_loki(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    [traces] = pipelines["traces"]["exporters"]
    [logs] = pipelines["logs"]["exporters"]
    assert traces == otel_collector.TRACES_EXPORTER
    assert logs == otel_collector.LOGS_EXPORTER
    exporters = collector["exporters"]
    assert exporters[traces]["endpoint"] == "jaeger:4317"  # Jaeger's OTLP gRPC receiver
    assert exporters[traces]["tls"] == {"insecure": True}
    assert exporters[logs]["endpoint"] == "http://loki:3100/otlp"  # Loki's OTLP endpoint
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"


def test_collector_uses_the_exporter_names_of_its_release(collector: dict[str, Any]) -> None:
    """v0.165 renamed `otlp`/`otlphttp` to `otlp_grpc`/`otlp_http` (the old ones warn)."""
    types = {component_type(name) for name in collector["exporters"]}
    assert not types & {"otlp", "otlphttp"}, types


def test_builder_manifest_has_every_component_at_one_release(collector: dict[str, Any]) -> None:
    manifest = load(BUILDER_MANIFEST)
    built = {
        kind: {entry["gomod"].split()[0]: entry["gomod"].split()[1] for entry in manifest[kind]}
        for kind in ("receivers", "processors", "exporters", "extensions", "providers")
    }
    used = {
        (kind, component_type(name))
        for config in (collector, load(TAIL_SAMPLING))
        for kind in ("receivers", "processors", "exporters", "extensions")
        for name in config.get(kind, {})
    }
    missing = [f"{kind} {name}" for kind, name in used if MODULES[kind, name] not in built[kind]]
    assert not missing, f"the configs use components the native build lacks: {missing}"
    # Only what the configs use is built: every module costs build time.
    assert sum(len(modules) for kind, modules in built.items() if kind != "providers") == len(used)

    release = versions.OTELCOL_VERSION
    assert manifest["dist"]["version"] == release
    for kind, modules in built.items():
        for module, version in modules.items():
            if module.startswith("github.com/open-telemetry/opentelemetry-collector-contrib/"):
                assert version.startswith(f"v{release.rsplit('.', 1)[0]}."), module
            elif kind == "providers":
                assert version == "v1.71.0", module  # the stable modules of this release
            else:
                assert version == f"v{release}", module


def test_compose_runs_the_contrib_image_of_the_same_release(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    service = compose["otel-collector"]
    image, tag = service["image"].rsplit(":", 1)
    assert image == "otel/opentelemetry-collector-contrib"
    assert tag == versions.OTELCOL_VERSION
    [config] = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--config=")]
    assert mounts(service)[config] == "infrastructure/otel-collector/config.yaml"
    published = {port.rsplit(":", 1)[1] for port in service["ports"]}
    assert published == {"4317", "4318"}  # the services' one OTLP endpoint
    # Nothing else on the host takes the OTLP ports.
    for name, other in compose.items():
        if name != "otel-collector":
            assert not {p.rsplit(":", 1)[1] for p in other.get("ports", [])} & published, name


# ------------------------------------------------------------------------ Loki


def test_loki_config_keeps_trace_ids_and_calls_no_one(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    loki = load(LOKI_CONFIG)
    assert loki["auth_enabled"] is False  # one tenant; the port is on loopback only
    assert loki["analytics"]["reporting_enabled"] is False  # no usage reports
    port = loki["server"]["http_listen_port"]
    exporter = collector["exporters"][otel_collector.LOGS_EXPORTER]
    assert exporter["endpoint"] == f"http://loki:{port}/otlp"
    # trace_id and span_id arrive as structured metadata: TSDB and schema v13 need it.
    latest = max(loki["schema_config"]["configs"], key=lambda c: str(c["from"]))
    assert (latest["store"], latest["schema"]) == ("tsdb", "v13")
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["compactor"]["retention_enabled"] is True
    assert re.fullmatch(r"\d+h", loki["limits_config"]["retention_period"])

    service = compose["loki"]
    [config] = [arg.split("=", 1)[1] for arg in service["command"]]
    assert mounts(service)[config] == "infrastructure/loki/config.yaml"
    data = loki["common"]["path_prefix"]
    assert f"loki-data:{data}" in service["volumes"]
    storage = loki["common"]["storage"]["filesystem"]
    for path in (*storage.values(), loki["compactor"]["working_directory"]):
        assert path.startswith(data + "/"), f"{path} is outside the loki-data volume"
    assert service["healthcheck"]["test"] == ["CMD", "/usr/bin/loki", "-health"]
    assert f"127.0.0.1:{port}:{port}" in service["ports"]


# --------------------------------------------------------------------- Grafana


def grafana_expanded(text: str) -> str:
    """The file as Grafana reads it: `$$` is a literal `$`; any other `$` is an env variable."""
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    single = re.findall(r"(?<!\$)\$(?!\$)[{\w]+", settings)
    assert not single, f"Grafana would replace these with environment variables: {single}"
    return text.replace("$$", "$")


def test_grafana_links_traces_to_logs_and_logs_to_traces() -> None:
    sources = {
        source["uid"]: source
        for source in yaml.safe_load(grafana_expanded(DATASOURCES.read_text()))["datasources"]
    }
    assert sources["loki"]["type"] == "loki"
    assert sources["loki"]["url"] == "http://loki:3100"

    to_logs = sources["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki"
    assert to_logs["customQuery"] is True
    assert to_logs["query"] == '{service_name=~".+"} | trace_id="${__trace.traceId}"'

    [to_trace] = sources["loki"]["jsonData"]["derivedFields"]
    assert to_trace["datasourceUid"] == "jaeger"
    # trace_id is structured metadata (a label to Grafana), not text in the line.
    assert (to_trace["matcherType"], to_trace["matcherRegex"]) == ("label", "trace_id")
    assert to_trace["url"] == "${__value.raw}"
    assert sum(bool(source.get("isDefault")) for source in sources.values()) == 1


def test_grafana_waits_for_loki(compose: dict[str, Any]) -> None:
    assert compose["grafana"]["depends_on"]["loki"] == {"condition": "service_healthy"}
    assert compose["otel-collector"]["depends_on"] == {
        "jaeger": {"condition": "service_healthy"},
        "loki": {"condition": "service_healthy"},
    }
