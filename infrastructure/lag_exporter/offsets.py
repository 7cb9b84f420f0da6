"""One read of the cluster's offsets: high-water marks, and each group's commits.

Read in the background every few seconds rather than on each scrape, so a
slow Kafka never makes a scrape time out; a scrape serves the latest read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Replication:
    """A partition's leader (-1: offline), and how many replicas it has and has in sync."""

    leader: int
    replicas: int
    in_sync: int


@dataclass(frozen=True)
class Offsets:
    """What one read found. ``brokers == 0`` means Kafka did not answer."""

    brokers: int = 0
    end: dict[Partition, int] = field(default_factory=dict)  # high-water marks
    committed: dict[str, dict[Partition, int]] = field(default_factory=dict)  # per group
    # Every partition's, internal topics' too: a broker down shows here first.
    replication: dict[Partition, Replication] = field(default_factory=dict)


@dataclass
class Clients:
    """An admin client (groups, topics, commits) and a group-less consumer (end offsets)."""

    admin: Any
    consumer: Any


@asynccontextmanager
async def connect(bootstrap: str, timeout_ms: int = 10_000) -> AsyncIterator[Clients]:
    """Both clients, started, and closed on the way out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=timeout_ms
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            yield Clients(admin, consumer)
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def read(clients: Clients) -> Offsets:
    """Read every non-internal partition's high-water mark and every group's commits."""
    admin = clients.admin
    cluster = await admin.describe_cluster()
    described = await admin.describe_topics()
    topics = [t for t in described if not t["is_internal"]]
    partitions = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in topics
        for p in topic["partitions"]
    ]
    ends = await clients.consumer.end_offsets(partitions) if partitions else {}
    # No DescribeGroups (members per group): aiokafka 0.14 fails to decode its
    # answer while a group rebalances ("Buffer underrun decoding string") and
    # drops the connection, and lag does not need it.
    groups = [group_id for group_id, *_ in await admin.list_consumer_groups()]
    commits = await asyncio.gather(*(admin.list_consumer_group_offsets(g) for g in groups))
    return Offsets(
        brokers=len(cluster["brokers"]),
        end={(tp.topic, tp.partition): offset for tp, offset in ends.items()},
        committed={
            group: {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}
            for group, found in zip(groups, commits, strict=True)
        },
        replication={
            (topic["topic"], p["partition"]): Replication(
                p["leader"], len(p["replicas"]), len(p["isr"])
            )
            for topic in described
            for p in topic["partitions"]
        },
    )
