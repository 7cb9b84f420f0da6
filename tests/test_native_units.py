"""platform_native without servers: build progress, the shipped-config rule, overlays.

A cold build takes minutes, so it must say that it is alive: these tests run
the real cache-and-lock code with a fake slow recipe and a heartbeat period
of a tenth of a second, and read what it prints.
"""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from platform_native import build, configs, processes, progress
from platform_native.servers import Alertmanager, Consul, Jaeger, Kafka, LagExporter, Prometheus

FAST_BEAT = 0.1


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty build cache and a fast heartbeat."""
    monkeypatch.setenv("PLATFORM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", FAST_BEAT)
    return tmp_path / "cache"


def slow_recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    log.note("compiling")
    time.sleep(6 * FAST_BEAT)
    (out / "fake").write_text("built")


def test_a_slow_build_says_what_it_builds_and_that_it_is_alive(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = build.ensure("fake", "1.0", slow_recipe)

    lines = capsys.readouterr().out.splitlines()
    log = cache / "logs" / "fake-1.0.log"
    assert lines[0] == f"    building fake 1.0 (log: {log})"
    beats = [line for line in lines if line.startswith("    building fake 1.0 … ")]
    assert len(beats) >= 2, lines
    assert all(line.endswith(f", log: {log}") for line in beats)
    assert lines[-1].startswith("    built fake 1.0 in ")
    assert (target / "fake").read_text() == "built"
    assert "### compiling" in log.read_text()


def test_a_cached_build_returns_at_once_and_quietly(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = build.ensure("fake", "1.0", slow_recipe)
    capsys.readouterr()

    def never(out: Path, work: Path, log: build.BuildLog) -> None:
        raise AssertionError("a cached artifact was built again")

    assert build.ensure("fake", "1.0", never) == first
    assert capsys.readouterr().out == ""


def test_waiting_for_another_process_build_is_reported(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds the lock, finishes the artifact, and we use it."""
    lock_path = cache / "locks" / "fake-1.0.lock"
    lock_path.parent.mkdir(parents=True)
    held = lock_path.open("a")
    fcntl.flock(held, fcntl.LOCK_EX)

    def other_process_finishes() -> None:
        time.sleep(5 * FAST_BEAT)
        (cache / "fake-1.0").mkdir()
        fcntl.flock(held, fcntl.LOCK_UN)

    def never(out: Path, work: Path, log: build.BuildLog) -> None:
        raise AssertionError("built although another process had finished")

    other = threading.Thread(target=other_process_finishes)
    other.start()
    try:
        assert build.ensure("fake", "1.0", never) == cache / "fake-1.0"
    finally:
        other.join()
        held.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("    waiting for another process building fake 1.0")
    assert any(line.startswith("    waiting for fake 1.0 … ") for line in lines), lines


def test_a_failed_build_names_its_log_and_caches_nothing(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(out: Path, work: Path, log: build.BuildLog) -> None:
        log.run(["sh", "-c", "echo compiler says no; exit 3"], cwd=work)

    with pytest.raises(build.BuildError, match="exit 3") as error:
        build.ensure("fake", "1.0", failing)
    assert "compiler says no" in str(error.value)
    assert str(cache / "logs" / "fake-1.0.log") in str(error.value)
    assert not (cache / "fake-1.0").exists()
    assert not list(cache.glob(".staging-*"))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0s"), (7.25, "7.2s"), (45, "45s"), (135, "2m15s"), (3720, "1h02m")],
)
def test_elapsed_reads_well(seconds: float, text: str) -> None:
    assert progress.elapsed(seconds) == text


# ----------------------------------------------------------- the shipped-config rule


def test_overlays_hold_only_addresses_ports_and_paths(tmp_path: Path) -> None:
    fake = tmp_path / "binary"  # never run: only the overlay is built
    overlays = {
        "consul": Consul(tmp_path / "consul", binary=fake).overlay(),
        "jaeger": Jaeger(tmp_path / "jaeger", binary=fake).overlay(),
    }
    for name, overlay in overlays.items():
        assert configs.overlay_violations(overlay) == [], name

    with pytest.raises(ValueError, match="only addresses, ports and paths"):
        configs.write_overlay(tmp_path / "bad.json", {"acl": {"default_policy": "allow"}})


def test_every_compose_address_in_prometheus_yml_gets_a_loopback_one(tmp_path: Path) -> None:
    fake = tmp_path / "binary"
    consul = Consul(tmp_path / "consul", binary=fake)
    jaeger = Jaeger(tmp_path / "jaeger", binary=fake)
    kafka = Kafka(tmp_path / "kafka", jars=fake)
    alertmanager = Alertmanager(tmp_path / "am", bin_dir=fake)
    lag = LagExporter(tmp_path / "lag", bootstrap=kafka.bootstrap, venv=fake)
    peers = [consul, jaeger, kafka, alertmanager, lag]
    prometheus = Prometheus(tmp_path / "prom", peers=peers, bin_dir=fake)
    shipped = configs.PROMETHEUS_CONFIG.read_text()

    prometheus.configure()
    rendered = prometheus.config_path.read_text()

    replacements = prometheus.replacements()
    assert set(configs.compose_addresses(shipped)) == {
        "consul:8500",
        "kong:8100",
        "jaeger:8888",
        "kafka-exporter:9308",
        "alertmanager:9093",
        "localhost:9090",
    }
    assert replacements["consul:8500"] == consul.http_addr
    assert replacements["jaeger:8888"] == f"127.0.0.1:{jaeger.metrics_port}"
    assert replacements["localhost:9090"] == prometheus.address
    assert replacements["alertmanager:9093"] == alertmanager.address
    assert replacements["kafka-exporter:9308"] == f"127.0.0.1:{lag.port}"
    assert configs.compose_addresses(rendered) == []  # no host name left to look up
    assert f"targets: [{configs.UNREACHABLE}]" in rendered  # kong
    # Nothing but the addresses differs.
    assert configs.replace_addresses(shipped, replacements) == rendered
    assert len(rendered.splitlines()) == len(shipped.splitlines())


def test_two_picks_in_one_process_never_share_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server picks its ports when built and binds them when started: a second server
    built in between must not get the first one's (deploy-all failed with otelcol's OTLP
    port "already in use" by Jaeger)."""
    order = processes._candidates()[:50]
    monkeypatch.setattr(processes, "_candidates", lambda: list(order))
    first = processes.free_ports(3)
    second = processes.free_ports(3)
    assert not set(first) & set(second), (first, second)


def test_kafka_opts_reach_the_brokers_jvm_as_in_kafkas_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_OPTS", "-XX:TieredStopAtLevel=1 -Dsome.flag=a")
    command = Kafka(tmp_path / "kafka", jars=tmp_path / "jars").command()
    options = command[: command.index("kafka.Kafka")]
    assert options[-4:] == ["-XX:TieredStopAtLevel=1", "-Dsome.flag=a", "-cp", f"{tmp_path}/jars/*"]
    monkeypatch.delenv("KAFKA_OPTS")
    assert "-XX:TieredStopAtLevel=1" not in Kafka(tmp_path / "k2", jars=tmp_path).command()
