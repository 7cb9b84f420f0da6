"""A service keeps serving while the collector or the log store is down.

One generated service handles the same load in five phases on the session's
Kafka, with a collector and a VictoriaLogs of this test's own (so stopping
them disturbs no other test):

1. everything up;
2. the collector stopped: the service's OTLP exports are refused, its
   bounded span and log queues drop what does not fit, nothing waits;
3. everything up again, once the service's logs reach the collector again;
4. the log store stopped: the collector queues the logs and retries, the
   service sees nothing of it;
5. everything up at last: the logs the store missed arrive.

Every message is traced and logged (the handler logs one line per event), so
telemetry is at its heaviest. Throughput is a benchmark, not an assertion:
each outage's figure is recorded in the reliability report next to the mean
of the phases with everything up just before and after it. What is asserted is that nothing is
lost, memory stays flat, every log line stays JSON, and each outage was real
(export errors in the service's or the collector's log).

The logs held while the store is away have a bound. The collector keeps them in its
logs exporter's queue (infrastructure/otel-collector/config.yaml: 32 MiB of OTLP;
this outage's 10,000 lines, about 140 bytes each, and those still on their way when
the store stopped take about 1.4 MB, 4 % of it), and retries each batch after at most 30 s
(retry_on_failure's max_interval) plus 50 % randomization: all of them are in the
store within 45 s of its return. The test waits until the collector holds nothing
more (HELD_LOGS_TIMEOUT), then requires its own counters to show no log record
refused, turned away by a full queue or given up on, and all it took in sent; and the
store to hold at least 99 % of the lines the service wrote to its stdout while the
store was away (the 1 % allows for the service's own SDK queue, 2048 lines, outside
the collector).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from platform_native import servers
from platform_native.servers.otel_collector import LOGS_EXPORTER
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .conftest import Platform
from .kafka_clients import create_topics
from .polling import eventually
from .rendering import render, wheelhouse
from .telemetry import json_line_problems

pytestmark = pytest.mark.reliability

MESSAGES = 10_000  # per phase
WARMUP = 1000
# The collector retries each batch it holds after at most 30 s (retry_on_failure's
# max_interval) plus its randomization (50 %): every held line reaches the store within
# 45 s of its return. The wait allows that and VictoriaLogs' indexing, with room.
HELD_LOGS_TIMEOUT = 90


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
    create_topics(platform.kafka, list(topics.values())[:3], partitions=info.partitions)
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
    returned = 0.0  # when the log store came back

    async def phases() -> None:
        nonlocal returned
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
            # The service's log exporter retries on a backoff of its own (1, 2, 4 s, ...),
            # its queue dropping meanwhile: everything is up again once its logs reach the
            # collector. Else that drop can run on into phase 4, whose lines are counted.
            restarted = time.monotonic()
            while collector_logs(collector)["accepted"] == 0:
                assert time.monotonic() - restarted < 30, "no log reached the collector"
                await asyncio.sleep(0.2)
            figures["seconds_until_the_service_exported_logs_again"] = round(
                time.monotonic() - restarted, 1
            )
            await phase("all_up_again")
            logs.stop()
            await phase("log_store_down")
            # The collector logs each failed delivery to the stopped log store, then retries.
            figures["collector_retries_logged"] = collector.log_since_launch().count(
                "Exporting failed. Will retry"
            )
            # What the collector holds as the store comes back: log records, and its queue's
            # size (in its sizer's unit, the batches being sent included) against its bound.
            held = collector_logs(collector)
            figures["collector_logs_held_at_the_stores_return"] = held["accepted"] - held["sent"]
            figures["collector_logs_queue_at_the_stores_return"] = held["queue_size"]
            figures["collector_logs_queue_capacity"] = held["queue_capacity"]
            logs.start()  # on the same port and data: the collector delivers what it holds
            returned = time.monotonic()
            await phase("all_up_at_last")

    asyncio.run(phases())
    assert collector.pid is not None
    figures["collector_rss_mib"] = rss_mib(collector.pid)
    # The collector sends what it held on its retry schedule, not at once: wait until it
    # holds nothing more (HELD_LOGS_TIMEOUT). Its own account since its restart (phases 3
    # to 5) must then show nothing refused, turned away by a full queue or given up on,
    # and all it took in sent.
    if eventually(lambda: resolved(collector_logs(collector)), HELD_LOGS_TIMEOUT):
        figures["seconds_from_the_stores_return_to_an_empty_collector_queue"] = round(
            time.monotonic() - returned, 1
        )
    account = collector_logs(collector)
    figures["collector_logs_accepted"] = account["accepted"]
    figures["collector_logs_sent"] = account["sent"]
    figures["collector_logs_dropped"] = (
        account["refused"] + account["enqueue_failed"] + account["send_failed"]
    )
    # Every line the service logged while the store was away (its stdout says which), and
    # how many of them the store holds (searchable within a second or so of arriving).
    logged = lines_with(service.log_path, " for log_store_down-")
    figures["logs_logged_while_the_store_was_away"] = logged
    eventually(lambda: count_logs(logs, "log_store_down") >= logged, timeout=30, interval=1)
    figures["logs_delivered_after_the_store_came_back"] = count_logs(logs, "log_store_down")
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
        "the held logs arrived (99 % of those logged while the store was away)": (
            figures["logs_delivered_after_the_store_came_back"] >= 0.99 * logged > 0
        ),
        "the collector dropped no log record and sent all it took in": (
            figures["collector_logs_dropped"] == 0
            and figures["collector_logs_sent"] == figures["collector_logs_accepted"]
        ),
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


def resolved(account: dict[str, int]) -> bool:
    """Whether the collector holds no log record: each it took in was sent or dropped."""
    settled = account["sent"] + account["enqueue_failed"] + account["send_failed"]
    return account["queue_size"] == 0 and settled == account["accepted"]


def collector_logs(collector: servers.OtelCollector) -> dict[str, int]:
    """The collector's own metrics for its logs pipeline, each summed over its labels.

    A counter appears once it counts something (no drop, no line): absent means 0.
    The queue's size counts the batches being sent too, and is in its sizer's unit.
    """
    names = {
        "otelcol_receiver_accepted_log_records": "accepted",
        "otelcol_receiver_refused_log_records": "refused",
        "otelcol_exporter_sent_log_records": "sent",
        "otelcol_exporter_enqueue_failed_log_records": "enqueue_failed",
        "otelcol_exporter_send_failed_log_records": "send_failed",
        "otelcol_exporter_queue_size": "queue_size",
        "otelcol_exporter_queue_capacity": "queue_capacity",
    }
    found = dict.fromkeys(names.values(), 0.0)
    for line in httpx.get(collector.metrics_url, timeout=5).text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0].removesuffix("_total")
        if name.startswith("otelcol_exporter_") and f'exporter="{LOGS_EXPORTER}"' not in series:
            continue
        if name in names:
            found[names[name]] += float(value)
    return {key: int(value) for key, value in found.items()}


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
