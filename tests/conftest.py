"""Session fixtures: the real servers on loopback, started once, stopped at the end.

The servers come from `infrastructure/native/platform_native` (built from the
registries at pinned versions and cached outside the repository). Every
process started here is stopped when the session ends, also on failure or
Ctrl-C: `servers.running` stops them, and platform_native kills anything left
at exit.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "infrastructure" / "native"))
sys.path.insert(0, str(REPO / "infrastructure"))  # platform_deploy

from platform_native import servers  # noqa: E402

# The tests' Kafka brokers live minutes: C1 alone has one ready in half the CPU (5.2 s
# against 11.5 s, one broker measured) and idling at half. Brokers of deploy-all.sh keep
# the full JIT. A KAFKA_OPTS of the caller's wins.
os.environ.setdefault("KAFKA_OPTS", "-XX:TieredStopAtLevel=1")

_RENDERS_MADE = pytest.StashKey[Path]()

# The report of what the reliability tests measured (see tests/report.py); pytester
# runs pytest inside the tests of that report. The `docker` fixture: a private
# Docker engine (tests/docker_harness.py).
pytest_plugins = ["pytester", "tests.report", "tests.docker_harness"]


@dataclass
class Platform:
    kafka: servers.Kafka
    consul: servers.Consul
    jaeger: servers.Jaeger
    workdir: Path
    logs: servers.VictoriaLogs
    collector: servers.OtelCollector

    def service_env(self, **extra: str) -> dict[str, str]:
        """The environment a service gets on this platform."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "CONSUL_HTTP_ADDR": f"http://{self.consul.http_addr}",
            # Traces and logs go to the collector only; it forwards them to Jaeger and
            # the log store.
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.collector.otlp_http,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export spans quickly in tests
            "OTEL_BLRP_SCHEDULE_DELAY": "200",  # and log records
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",  # every request, to follow it
            "LOG_FORMAT": "json",
            "CONSUL_CHECK_INTERVAL": "1s",
            "SHUTDOWN_GRACE_SECONDS": "10",
            **extra,
        }


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("platform")
    kafka = servers.Kafka(workdir / "kafka")
    consul = servers.Consul(workdir / "consul")
    jaeger = servers.Jaeger(workdir / "jaeger")
    logs = servers.VictoriaLogs(workdir / "victorialogs")
    collector = servers.OtelCollector(
        workdir / "otelcol", jaeger=jaeger, logs_endpoint=logs.otlp_endpoint
    )
    with servers.running(kafka, consul, jaeger, logs, collector):
        yield Platform(kafka, consul, jaeger, workdir, logs, collector)


# The twenty modules that take longest, longest first (their tests' total time in one
# warm make test). `make test` hands out modules in this order (--no-loadscope-reorder), so
# the long ones start first and the short ones fill in after; xdist's own order, most
# tests first, started the 3-minute rotation last and left it running alone.
SLOW_FIRST = (
    "test_reliability_state.py",
    "test_reliability_secrets.py",
    "test_kafka_cluster.py",
    "test_chassis.py",
    "test_alerting.py",
    "test_bench_smoke.py",
    "test_openbao.py",
    "test_images.py",
    "test_secured_service.py",
    "test_template.py",
    "test_native_servers.py",
    "test_reliability_dependencies.py",
    "test_reliability_messages.py",
    "test_install_anywhere.py",
    "test_deploy.py",
    "test_compose.py",
    "test_chart_dry_run.py",
    "test_chart.py",
    "test_upgrade.py",
    "test_contracts.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules first, in SLOW_FIRST's order; the rest as collected."""
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the servers before the first test that needs them, with progress lines.

    A cold build takes minutes; inside a fixture pytest would capture its
    heartbeat, so it runs here, where the lines reach the terminal.
    """
    markers = ("infra", "reliability")
    needed = any(item.get_closest_marker(m) for item in session.items for m in markers)
    kubernetes = [item for item in session.items if item.get_closest_marker("k8s")]
    if not (needed or kubernetes) or session.config.option.collectonly:
        return
    from platform_native.__main__ import build_all
    from tests.harness.kubernetes import build_kubernetes_tools

    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        if needed:
            build_all()
        if kubernetes:  # the API server only for the tests that run it
            build_kubernetes_tools(any(item.get_closest_marker("infra") for item in kubernetes))


def pytest_configure(config: pytest.Config) -> None:
    """The session's shared renderings (tests/rendering.py): made by the main process, so
    its xdist workers, which inherit the environment, share one folder."""
    from tests.rendering import RENDERS

    if not hasattr(config, "workerinput") and RENDERS not in os.environ:
        os.environ[RENDERS] = tempfile.mkdtemp(prefix="event-platform-renders-")
        config.stash[_RENDERS_MADE] = Path(os.environ[RENDERS])


def pytest_unconfigure(config: pytest.Config) -> None:
    from tests.rendering import RENDERS

    made = config.stash.get(_RENDERS_MADE, None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(RENDERS, None)
