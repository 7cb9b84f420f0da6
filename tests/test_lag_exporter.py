"""The platform's consumer-group lag exporter: kafka-exporter's names and meaning.

The unit tests turn one read of offsets into metrics; the `infra` ones run the
exporter as the native platform does (its own virtualenv, a real Kafka) and
compare what it serves with what Kafka says.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from lag_exporter.metrics import families, lags
from lag_exporter.offsets import Offsets, Replication
from platform_native.processes import listening_sockets
from platform_native.servers import LagExporter, running

from .conftest import Platform
from .kafka_clients import create_topics

READ = Offsets(
    brokers=1,
    end={("orders", 0): 10, ("orders", 1): 7, ("orders", 2): 0, ("billing", 0): 5},
    committed={
        "orders-svc": {("orders", 0): 4, ("orders", 1): 7},  # nothing on partition 2
        "idle": {},  # a group that never committed
    },
)


def samples(offsets: Offsets) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, as Prometheus would parse the exposition text."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    class Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return families(offsets)

    registry = CollectorRegistry()
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_lag_is_the_high_water_mark_minus_the_commit_and_minus_one_without_one() -> None:
    assert lags(READ) == {
        ("orders-svc", "orders", 0): 6,
        ("orders-svc", "orders", 1): 0,
        ("orders-svc", "orders", 2): -1,
    }


def test_metric_names_and_labels_are_kafka_exporters() -> None:
    found = samples(READ)

    def one(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert one("kafka_brokers") == 1
    assert one("kafka_topic_partition_current_offset", topic="orders", partition="0") == 10
    lag = "kafka_consumergroup_lag"
    assert one(lag, consumergroup="orders-svc", topic="orders", partition="0") == 6
    assert one(lag, consumergroup="orders-svc", topic="orders", partition="2") == -1
    offset = "kafka_consumergroup_current_offset"
    assert one(offset, consumergroup="orders-svc", topic="orders", partition="2") == -1
    assert one("kafka_consumergroup_lag_sum", consumergroup="orders-svc", topic="orders") == 6
    # Topics a group never committed on, and groups without commits, are left out.
    assert not [key for key in found if ("topic", "billing") in key[1] and "group" in key[0]]
    assert not [key for key in found if ("consumergroup", "idle") in key[1] and "lag" in key[0]]


def test_each_partitions_leader_replicas_and_isr_are_served_as_kafka_exporter_does() -> None:
    three = {
        ("orders", 0): Replication(leader=2, replicas=3, in_sync=3),
        ("orders", 1): Replication(leader=1, replicas=3, in_sync=2),  # a follower is gone
        ("__consumer_offsets", 7): Replication(leader=-1, replicas=3, in_sync=0),  # offline
    }
    found = samples(Offsets(brokers=2, replication=three))

    def each(name: str) -> dict[tuple[str, str], float]:
        return {
            (dict(labels)["topic"], dict(labels)["partition"]): value
            for (sample, labels), value in found.items()
            if sample == name
        }

    assert each("kafka_topic_partition_leader") == {
        ("orders", "0"): 2,
        ("orders", "1"): 1,
        ("__consumer_offsets", "7"): -1,
    }
    assert set(each("kafka_topic_partition_replicas").values()) == {3}
    assert each("kafka_topic_partition_in_sync_replica")[("orders", "1")] == 2
    assert each("kafka_topic_partition_under_replicated_partition") == {
        ("orders", "0"): 0,
        ("orders", "1"): 1,
        ("__consumer_offsets", "7"): 1,
    }


def test_while_kafka_does_not_answer_only_the_broker_count_is_served() -> None:
    found = samples(Offsets())
    assert found == {("kafka_brokers", ()): 0}


# ------------------------------------------------------------- a real Kafka


@pytest.fixture(scope="module")
def exporter(platform: Platform) -> Iterator[LagExporter]:
    server = LagExporter(platform.workdir / "lag-exporter-test", bootstrap=platform.kafka.bootstrap)
    server.interval = 1.0
    with running(server):
        yield server


def scrape(exporter: LagExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(exporter.metrics_url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def produce_and_commit(bootstrap: str, topic: str, group: str, sent: int, read: int) -> None:
    """``sent`` records to partition 0; the group reads ``read`` and commits, then leaves."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for index in range(sent):
            await producer.send(topic, str(index).encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.commit({partition: read})
    finally:
        await consumer.stop()


@pytest.mark.infra
def test_served_lag_matches_kafka(platform: Platform, exporter: LagExporter) -> None:
    topic, group = f"lag-{uuid.uuid4().hex[:6]}", f"lag-group-{uuid.uuid4().hex[:6]}"
    create_topics(platform.kafka, [topic], partitions=2)
    asyncio.run(produce_and_commit(platform.kafka.bootstrap, topic, group, sent=25, read=10))

    def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(pairs.items()))

    lag_0 = ("kafka_consumergroup_lag", labels(consumergroup=group, topic=topic, partition="0"))
    deadline = time.monotonic() + 30
    while (found := scrape(exporter)).get(lag_0) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found[lag_0] == 15  # 25 produced, 10 committed (the group has no member now)
    lag_1 = ("kafka_consumergroup_lag", labels(consumergroup=group, topic=topic, partition="1"))
    assert found[lag_1] == -1  # nothing committed there
    end = ("kafka_topic_partition_current_offset", labels(topic=topic, partition="0"))
    assert found[end] == 25
    assert found[("kafka_brokers", ())] == 1


@pytest.mark.infra
def test_it_listens_on_loopback_only(exporter: LagExporter) -> None:
    assert exporter.pid is not None
    sockets = listening_sockets([exporter.pid])
    assert sockets, "the exporter listens nowhere"
    assert {ip for _, ip, _, _ in sockets} <= {"127.0.0.1"}
