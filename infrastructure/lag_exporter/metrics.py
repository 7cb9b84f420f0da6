"""The offsets as Prometheus metrics, named and labelled as kafka-exporter names them.

These are the kafka-exporter metrics the platform's rules and dashboards use
(not kafka_consumergroup_members: see offsets.read). Their meaning follows
kafka-exporter too, so one set of alert rules fits both modes: a group is
reported for each topic on which it has committed at least one offset; its lag
on a partition is the high-water mark minus the committed offset, or -1 where
it has committed nothing on that partition yet.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lag_exporter.offsets import Offsets

NO_COMMIT = -1


def lags(offsets: Offsets) -> dict[tuple[str, str, int], int]:
    """Lag by (group, topic, partition), for the topics each group has committed on."""
    found = {}
    for group, committed in offsets.committed.items():
        topics = {topic for topic, _ in committed}
        for (topic, partition), end in sorted(offsets.end.items()):
            if topic not in topics:
                continue
            offset = committed.get((topic, partition), NO_COMMIT)
            found[(group, topic, partition)] = NO_COMMIT if offset < 0 else end - offset
    return found


def families(offsets: Offsets) -> list[GaugeMetricFamily]:
    """Every metric family of one read."""
    brokers = GaugeMetricFamily("kafka_brokers", "Number of Brokers in the Kafka Cluster.")
    brokers.add_metric([], offsets.brokers)
    current = GaugeMetricFamily(
        "kafka_topic_partition_current_offset",
        "Current Offset of a Broker at Topic/Partition",
        labels=["topic", "partition"],
    )
    for (topic, partition), end in sorted(offsets.end.items()):
        current.add_metric([topic, str(partition)], end)
    return [brokers, current, *replication_families(offsets), *group_families(offsets)]


def replication_families(offsets: Offsets) -> Iterator[GaugeMetricFamily]:
    """Each partition's leader, replicas and in-sync replicas, as kafka-exporter has them:
    the under-replicated, offline-partition and broker-down alerts read these."""
    labels = ["topic", "partition"]
    leader = GaugeMetricFamily(
        "kafka_topic_partition_leader", "Leader Broker ID of this Topic/Partition", labels=labels
    )
    replicas = GaugeMetricFamily(
        "kafka_topic_partition_replicas",
        "Number of Replicas for this Topic/Partition",
        labels=labels,
    )
    in_sync = GaugeMetricFamily(
        "kafka_topic_partition_in_sync_replica",
        "Number of In-Sync Replicas for this Topic/Partition",
        labels=labels,
    )
    under = GaugeMetricFamily(
        "kafka_topic_partition_under_replicated_partition",
        "1 if Topic/Partition is under Replicated",
        labels=labels,
    )
    for (topic, partition), state in sorted(offsets.replication.items()):
        key = [topic, str(partition)]
        leader.add_metric(key, state.leader)
        replicas.add_metric(key, state.replicas)
        in_sync.add_metric(key, state.in_sync)
        under.add_metric(key, 1 if state.in_sync < state.replicas else 0)
    yield from (leader, replicas, in_sync, under)


def group_families(offsets: Offsets) -> Iterator[GaugeMetricFamily]:
    """Committed offsets and lag per partition, and their sums per topic."""
    labels = ["consumergroup", "topic", "partition"]
    committed = GaugeMetricFamily(
        "kafka_consumergroup_current_offset",
        "Current Offset of a ConsumerGroup at Topic/Partition",
        labels=labels,
    )
    lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
        labels=labels,
    )
    lag_sum = GaugeMetricFamily(
        "kafka_consumergroup_lag_sum",
        "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
        labels=["consumergroup", "topic"],
    )
    sums: dict[tuple[str, str], int] = {}
    for (group, topic, partition), value in lags(offsets).items():
        offset = offsets.committed[group].get((topic, partition), NO_COMMIT)
        committed.add_metric([group, topic, str(partition)], offset)
        lag.add_metric([group, topic, str(partition)], value)
        sums[(group, topic)] = sums.get((group, topic), 0) + max(value, 0)
    for (group, topic), total in sorted(sums.items()):
        lag_sum.add_metric([group, topic], total)
    yield from (committed, lag, lag_sum)


class LagCollector(Collector):
    """Serves the latest read; the refresh loop replaces it (one reference, no lock)."""

    def __init__(self) -> None:
        self.offsets = Offsets()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from families(self.offsets)
