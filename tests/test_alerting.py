"""Alerts, end to end: a real service breaks, the alert reaches the receiver, and resolves.

The whole chain runs as on the native platform: a generated value-architect
(its own process and virtualenv) on the session's Kafka, Consul and Jaeger;
the lag exporter; Prometheus with the shipped prometheus.yml and the shipped
rules rendered with short `for:` durations (the test configuration, through
platform_native.alert_rules); Alertmanager with the shipped routing and
inhibition, its grouping timers shortened; and the alert log it posts to. Every
assertion reads Alertmanager's API or the alert log's file.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from platform_deploy import alerts as deploy_alerts
from platform_native import alert_rules, configs
from platform_native.processes import listening_sockets
from platform_native.servers import Alerting, Prometheus, running
from platform_native.services import ServiceInfo, ServiceProcess, install, passing_instances

from .conftest import Platform
from .rendering import render, wheelhouse
from .test_reliability_dependencies import own_topics  # topics and a group of its own

pytestmark = pytest.mark.infra

SERVICE = "value-architect"
# Short durations, so each scenario takes a minute or two instead of ten.
TEST_THRESHOLDS: dict[str, str | int | float] = {
    "instance_down_for": "20s",  # longer than a graceful stop's one or two failed scrapes
    "not_passing_for": "40s",  # longer than instance_down_for, as shipped
    "kafka_unreachable_for": "10s",
    "consumer_lag_messages": 30,
    "consumer_lag_growth_window": "1m",
    "consumer_lag_for": "15s",
    "dead_letter_window": "45s",
}
ALERT_TIMEOUT = 120.0  # the bound: an alert within two minutes


def fast_alertmanager_config() -> str:
    """The shipped config, notifying within a second or two of a change."""
    config = yaml.safe_load(configs.ALERTMANAGER_CONFIG.read_text())
    config["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Chain:
    prometheus: Prometheus
    alerting: Alerting
    info: ServiceInfo
    script: Path
    root: Path

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """Alertmanager's current alerts of that name whose labels include ``labels``."""
        return [
            alert
            for alert in self.alerting.alertmanager.alerts()
            if alert["labels"]["alertname"] == name
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    def received(self, name: str, status: str, **labels: str) -> list[dict[str, Any]]:
        """Lines of the alert log for that alert name, status and labels."""
        return [
            line
            for line in self.alerting.alert_log.received()
            if line["labels"]["alertname"] == name
            and line["status"] == status
            and all(line["labels"].get(k) == v for k, v in labels.items())
        ]


@pytest.fixture(scope="module")
def chain(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("alerting")
    info = ServiceInfo.read(render(root))
    script = install(info.directory, wheels=wheelhouse())
    alerting = Alerting.create(
        root / "servers", platform.kafka, alertmanager_config=fast_alertmanager_config()
    )
    alerting.lag_exporter.interval = 1.0
    prometheus = Prometheus(
        root / "servers" / "prometheus",
        peers=[platform.consul, platform.jaeger, platform.kafka, *alerting],
        rules_text=alert_rules.render(TEST_THRESHOLDS),
    )
    with running(*alerting, prometheus):
        yield Chain(prometheus, alerting, info, script, root)


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``check`` until it returns something truthy; fail saying ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s still waiting for: {what}")
        time.sleep(1)
    return result


# ---------------------------------------------------------------- the service


def start(platform: Platform, chain: Chain, instance: str, **env: str) -> ServiceProcess:
    """Start value-architect as instance ``instance``; wait until Consul says it passes."""
    process = ServiceProcess(
        chain.info,
        chain.script,
        platform.service_env(SERVICE_INSTANCE_ID=instance, **env),
        chain.root / f"{instance}.log",
    ).start()
    service_id = f"{SERVICE}-{instance}"

    def passing() -> bool:
        assert process.process is not None and process.process.poll() is None, process.log_tail()
        ids = {e["Service"]["ID"] for e in passing_instances(platform.consul.http_addr, SERVICE)}
        return service_id in ids

    eventually(passing, 90, f"{service_id} passing in Consul")
    return process


def scraped(chain: Chain, instance: str) -> bool:
    query = f'up{{job="services", instance="{SERVICE}-{instance}"}} == 1'
    return bool(chain.prometheus.query(query))


class Producer:
    """Sends requests to a topic at a steady rate in a thread, until stopped."""

    def __init__(self, bootstrap: str, topic: str, per_second: float) -> None:
        self.bootstrap, self.topic, self.pause = bootstrap, topic, 1 / per_second
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            while not self._stop.is_set():
                key = f"lag-{self.sent}"
                body = f'{{"company_name": "{key}", "industry": "Alerting"}}'
                await producer.send_and_wait(self.topic, body.encode(), key=key.encode())
                self.sent += 1
                await asyncio.sleep(self.pause)
        finally:
            await producer.stop()


def send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for index, value in enumerate(values):
                await producer.send_and_wait(topic, value, key=f"poison-{index}".encode())
        finally:
            await producer.stop()

    asyncio.run(run())


# ------------------------------------------------------------------ scenarios


def test_the_alerting_servers_listen_on_loopback_only(chain: Chain) -> None:
    pids = [server.pid for server in (*chain.alerting, chain.prometheus)]
    assert all(pid is not None for pid in pids)
    sockets = listening_sockets([pid for pid in pids if pid is not None])
    assert {ip for _, ip, _, _ in sockets} == {"127.0.0.1"}, sockets


def test_a_killed_service_alerts_within_two_minutes_and_resolves_when_back(
    platform: Platform, chain: Chain
) -> None:
    instance = "alerting-kill"
    labels = {"service": SERVICE, "instance": f"{SERVICE}-{instance}"}
    topics = own_topics(platform, "kill")
    process = start(platform, chain, instance, **topics)
    try:
        eventually(lambda: scraped(chain, instance), 60, "Prometheus scraping the service")
        process.kill()  # SIGKILL: no deregistration, no goodbye
        killed = time.monotonic()

        [down] = eventually(
            lambda: chain.alerts("ServiceInstanceDown", **labels), ALERT_TIMEOUT, "the alert"
        )
        assert down["status"]["state"] == "active"
        assert down["labels"]["severity"] == "warning"
        assert down["annotations"]["runbook_url"].endswith("#serviceinstancedown")
        [line] = eventually(
            lambda: chain.received("ServiceInstanceDown", "firing", **labels), 30, "the receiver"
        )
        assert line["receiver"] == "service-chat"
        assert time.monotonic() - killed < ALERT_TIMEOUT
        # Its only instance is gone: the service is down, and that pages.
        eventually(
            lambda: chain.received("ServiceDown", "firing", service=SERVICE), 60, "ServiceDown"
        )
        assert {line["receiver"] for line in chain.received("ServiceDown", "firing")} == {
            "service-page"
        }
        # Its failing health check fires too, but the instance being down inhibits it.
        [not_passing] = eventually(
            lambda: chain.alerts("ServiceInstanceNotPassing", **labels), 60, "NotPassing"
        )
        assert not_passing["status"]["state"] == "suppressed"
        assert not_passing["status"]["inhibitedBy"]
        assert not chain.received("ServiceInstanceNotPassing", "firing", **labels)
        # What `./deploy-all.sh status` prints ends with the firing alerts.
        report = "\n".join(deploy_alerts.report(chain.alerting.alertmanager.url))
        assert f"ServiceInstanceDown  service={SERVICE}  instance={labels['instance']}" in report
        assert "ServiceInstanceNotPassing" not in report  # inhibited: nobody is told

        process = start(platform, chain, instance, **topics)  # the same instance, again
        eventually(lambda: not chain.alerts("ServiceInstanceDown", **labels), 90, "resolution")
        eventually(lambda: not chain.alerts("ServiceDown", service=SERVICE), 60, "ServiceDown off")
        eventually(
            lambda: chain.received("ServiceInstanceDown", "resolved", **labels), 30, "resolved"
        )
    finally:
        process.terminate()


def test_a_stopped_consumer_fires_lag_and_resolves_once_drained(
    platform: Platform, chain: Chain
) -> None:
    topics = own_topics(platform, "lag")
    group = topics["CONSUMER_GROUP"]
    instance = "alerting-lag"
    process = start(platform, chain, instance, **topics)
    bootstrap = platform.kafka.bootstrap
    lag = f'consumergroup_topic:kafka_consumergroup_lag:sum{{consumergroup="{group}"}}'

    def lag_is(value: float) -> bool:
        return [float(r["value"][1]) for r in chain.prometheus.query(lag)] == [value]

    try:
        with Producer(bootstrap, topics["CONSUMES_TOPIC"], per_second=20):
            # Consuming fine: Kafka's view of the group, labelled with its service
            # once Prometheus has scraped the service's own consumed counter.
            [found] = eventually(
                lambda: [r for r in chain.prometheus.query(lag) if "service" in r["metric"]],
                90,
                "the group's lag, with its service",
            )
            assert found["metric"]["service"] == SERVICE
            process.terminate()  # SIGTERM: a graceful stop, deregistered at once

            [alert] = eventually(
                lambda: chain.alerts("ConsumerLagHigh", consumergroup=group), ALERT_TIMEOUT, "lag"
            )
            assert alert["labels"]["service"] == SERVICE
            assert alert["labels"]["topic"] == topics["CONSUMES_TOPIC"]
            assert alert["status"]["state"] == "active"
            [line] = eventually(
                lambda: chain.received("ConsumerLagHigh", "firing", consumergroup=group), 30, "log"
            )
            assert line["receiver"] == "service-page"
            # The series the dashboards plot exist: the alerts view's and Kafka's lag.
            wanted = {"ALERTS", "consumergroup_topic:kafka_consumergroup_lag:sum"}
            query = f'count by (__name__) ({{__name__=~"{"|".join(wanted)}"}})'
            assert {r["metric"]["__name__"] for r in chain.prometheus.query(query)} == wanted
            # A graceful stop is not a crash: nothing says the service is down.
            assert not chain.alerts("ServiceDown", service=SERVICE)
            assert not chain.alerts("ServiceInstanceDown", instance=f"{SERVICE}-{instance}")

            process = start(platform, chain, instance, **topics)
            time.sleep(5)  # still producing while the consumer catches up
        eventually(lambda: lag_is(0), 90, "the lag drained to 0")
        eventually(lambda: not chain.alerts("ConsumerLagHigh", consumergroup=group), 90, "resolved")
        eventually(
            lambda: chain.received("ConsumerLagHigh", "resolved", consumergroup=group), 30, "log"
        )
    finally:
        process.terminate()


def test_poison_messages_fire_the_dead_letter_alert_with_service_and_reason(
    platform: Platform, chain: Chain
) -> None:
    topics = own_topics(platform, "poison")
    process = start(platform, chain, "alerting-poison", **topics)
    requested = topics["CONSUMES_TOPIC"]
    try:
        eventually(lambda: scraped(chain, "alerting-poison"), 60, "Prometheus scraping it")
        poison = [b"not json", b'{"company_name": 42}', b"", b"\xff\xfe"]
        send(platform.kafka.bootstrap, requested, poison)

        query = (
            "sum by (reason) (messaging_dead_lettered_messages_total"
            f'{{service="{SERVICE}", topic="{requested}"}})'
        )
        counted = eventually(
            lambda: (
                (found := chain.prometheus.query(query))
                and sum(float(r["value"][1]) for r in found) == len(poison)
                and found
            ),
            60,
            "every poison message dead-lettered",
        )
        reasons = {r["metric"]["reason"] for r in counted}
        assert reasons <= {"PoisonMessageError", "ValidationError"}, reasons

        def fired() -> set[str]:
            found = chain.alerts("MessagesDeadLettered", service=SERVICE, topic=requested)
            return {alert["labels"]["reason"] for alert in found}

        eventually(lambda: fired() == reasons, ALERT_TIMEOUT, f"an alert per reason {reasons}")
        lines = eventually(
            lambda: chain.received("MessagesDeadLettered", "firing", topic=requested), 30, "log"
        )
        assert {line["labels"]["reason"] for line in lines} == reasons
        assert {line["receiver"] for line in lines} == {"service-chat"}
        assert {line["labels"]["group"] for line in lines} == {topics["CONSUMER_GROUP"]}
    finally:
        process.terminate()
