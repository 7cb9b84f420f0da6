"""A service keeps serving while the collector or the log store is down.

One generated service handles the same load in five phases on the session's
Kafka, with a collector and a VictoriaLogs of this test's own (so stopping
them disturbs no other test):

1. everything up;
2. the collector stopped: the service's OTLP exports are refused, its
   bounded span and log queues drop what does not fit, nothing waits;
3. everything up again;
4. the log store stopped: the collector queues the logs and retries, the
   service sees nothing of it;
5. everything up at last: the logs the store missed arrive.

Every message is traced and logged (the handler logs one line per event), so
telemetry is at its heaviest. Throughput is a benchmark, not an assertion:
each outage's figure is recorded in the reliability report next to the mean
of the phases with everything up just before and after it. What is asserted is that nothing is
lost, memory stays flat, every log line stays JSON, and each outage was real
(export errors in the service's or the collector's log).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from platform_native import servers
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .conftest import Platform
from .polling import eventually
from .rendering import render, wheelhouse
from .telemetry import json_line_problems

pytestmark = pytest.mark.reliability

MESSAGES = 10_000  # per phase
WARMUP = 1000


@dataclass
class Backends:
    collector: servers.OtelCollector
    logs: servers.VictoriaLogs


@pytest.fixture(scope="module")
def backends(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    root = tmp_path_factory.mktemp("telemetry-backends")
    logs = servers.VictoriaLogs(root / "victorialogs")
    collector = servers.OtelCollector(
        root / "otelcol", jaeger=platform.jaeger, logs_endpoint=logs.otlp_endpoint
    )
    with servers.running(logs, collector):
        yield Backends(collector, logs)


@pytest.fixture(scope="module")
def service(
    platform: Platform, backends: Backends, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("telemetry-backends-service")
    info = ServiceInfo.read(render(root))
    prefix = f"backends-{uuid.uuid4().hex[:6]}"
    topics = {
        "CONSUMES_TOPIC": f"{prefix}.requested",
        "PRODUCES_TOPIC": f"{prefix}.created",
        "DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
        "CONSUMER_GROUP": prefix,
    }
    platform.kafka.create_topics(list(topics.values())[:3], partitions=info.partitions)
    env = platform.service_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=backends.collector.otlp_http,
        CONSUL_ENABLED="false",
        LOG_LEVELS=f"{info.package}=DEBUG",  # the handler's line per event
        **topics,
    )
    process = ServiceProcess(
        info, install(info.directory, wheels=wheelhouse()), env, root / f"{info.name}.log"
    ).start()
    try:
        yield process
    finally:
        process.terminate()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise AssertionError(f"no VmRSS for {pid}")


def lines_with(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text)


class Load:
    """Requests produced straight to the service's topic; its results counted as they come."""

    def __init__(self, bootstrap: str, consumes: str, produces: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.results = AIOKafkaConsumer(
            produces, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.topic = consumes
        self.sent = 0
        self.received = 0

    async def __aenter__(self) -> Load:
        await self.producer.start()
        await self.results.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.producer.stop()
        await self.results.stop()

    async def run(self, label: str, count: int, timeout: float = 300) -> float:
        """Send `count` requests, wait for all their results; the seconds it took."""
        started = time.monotonic()
        sends = []
        for i in range(count):
            body = {"company_name": f"{label}-{i:05d}", "industry": "Backends"}
            value = json.dumps(body).encode()
            sends.append(await self.producer.send(self.topic, value, key=f"{i}".encode()))
        await asyncio.gather(*sends)
        self.sent += count
        while self.received < self.sent:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{label}: {self.sent - self.received} results missing")
            batches = await self.results.getmany(timeout_ms=500)
            self.received += sum(len(batch) for batch in batches.values())
        return time.monotonic() - started


def ready(process: ServiceProcess) -> bool:
    try:
        return httpx.get(f"{process.url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_throughput_holds_while_the_collector_or_the_log_store_is_down(
    platform: Platform, backends: Backends, service: ServiceProcess
) -> None:
    assert eventually(lambda: ready(service), timeout=90), service.log_tail()
    collector, logs = backends.collector, backends.logs
    assert service.process is not None
    pid = service.process.pid
    figures: dict[str, Any] = {"messages_per_phase": MESSAGES}

    async def phases() -> None:
        env = service.env
        topics = (env["CONSUMES_TOPIC"], env["PRODUCES_TOPIC"])
        async with Load(platform.kafka.bootstrap, *topics) as load:

            async def phase(name: str) -> None:
                """One phase's throughput; its RSS halfway and at the end."""
                seconds = await load.run(f"{name}-1", MESSAGES // 2)
                figures[f"rss_mib_{name}_halfway"] = rss_mib(pid)
                seconds += await load.run(f"{name}-2", MESSAGES - MESSAGES // 2)
                figures[f"rss_mib_{name}"] = rss_mib(pid)
                figures[f"msg_per_s_{name}"] = round(MESSAGES / seconds)

            await load.run("warmup", WARMUP)
            figures["rss_mib_after_warmup"] = rss_mib(pid)
            await phase("all_up")

            errors_before = lines_with(service.log_path, "opentelemetry.exporter")
            collector.stop()
            await phase("collector_down")
            figures["service_export_errors_logged"] = (
                lines_with(service.log_path, "opentelemetry.exporter") - errors_before
            )

            collector.start()
            await phase("all_up_again")
            logs.stop()
            await phase("log_store_down")
            # The collector logs each failed delivery to the stopped log store, then retries.
            figures["collector_retries_logged"] = collector.log_since_launch().count(
                "Exporting failed. Will retry"
            )
            logs.start()  # on the same port and data: the collector delivers what it holds
            await phase("all_up_at_last")

    asyncio.run(phases())
    assert collector.pid is not None
    figures["collector_rss_mib"] = rss_mib(collector.pid)
    figures["logs_delivered_after_the_store_came_back"] = settled(
        lambda: count_logs(logs, "log_store_down"), timeout=120
    )
    dead = count_records(platform.kafka.bootstrap, service.env["DEAD_LETTER_TOPIC"])
    figures["dead_lettered"] = dead
    # The span and log queues (2048 records each) fill while the collector is away:
    # memory grows by their size, then stays flat however long the outage lasts.
    figures["rss_growth_mib"] = round(
        max(figures[f"rss_mib_{phase}"] for phase in ("collector_down", "log_store_down"))
        - figures["rss_mib_after_warmup"],
        1,
    )
    figures["rss_growth_second_half_of_collector_down_mib"] = round(
        figures["rss_mib_collector_down"] - figures["rss_mib_collector_down_halfway"], 1
    )
    # Each outage against the mean of the phases with everything up just before and after.
    for outage, before, after in (
        ("collector_down", "all_up", "all_up_again"),
        ("log_store_down", "all_up_again", "all_up_at_last"),
    ):
        up = (figures[f"msg_per_s_{before}"] + figures[f"msg_per_s_{after}"]) / 2
        figures[f"throughput_ratio_{outage}"] = round(figures[f"msg_per_s_{outage}"] / up, 2)

    # Even while the queues overflow, every line the service writes is a JSON record.
    problems = json_line_problems(service.log_path)
    figures["log_lines_not_json"] = len(problems)
    checks = {
        "nothing dead-lettered": dead == 0,
        "every log line is JSON": not problems,
        "memory grew by under 40 MiB": figures["rss_growth_mib"] < 40,
        "memory flat over the second half of the collector outage": (
            figures["rss_growth_second_half_of_collector_down_mib"] < 8
        ),
        "the collector really was away": figures["service_export_errors_logged"] > 0,
        "the log store really was away": figures["collector_retries_logged"] > 0,
        "the held logs arrived": figures["logs_delivered_after_the_store_came_back"] > 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    passed = not failed
    report.record(
        "telemetry.backends_down",
        "Collector or log store down: every message is still handled (throughput side by "
        "side with both up), the service's memory stays flat, and the collector delivers "
        "the logs it held once the log store is back",
        passed,
        **figures,
    )
    print(json.dumps(figures, indent=2))
    assert not failed, f"failed: {failed}; figures: {figures}\n{service.log_tail(10)}"


def count_logs(store: servers.VictoriaLogs, label: str) -> int:
    """The handler's lines for the messages of one phase that reached the log store."""
    answer = store.query(f'"Handling" AND "{label}" | stats count() as n')
    return int(answer[0]["n"]) if answer else 0


def settled(count: Callable[[], int], timeout: float) -> int:
    """`count()` once it is above 0 and has stopped growing (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        now = count()
        if now > 0 and now == last:
            break
        last = now
        time.sleep(3)
    return last


def count_records(bootstrap: str, topic: str) -> int:
    async def read() -> int:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=3000)
            return sum(len(batch) for batch in batches.values())
        finally:
            await consumer.stop()

    return asyncio.run(read())
