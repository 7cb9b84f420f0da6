"""Create the topics every service declares, with aiokafka's admin client.

Replicated as the cluster allows: on three brokers or more (``--kafka-brokers 3``)
three replicas with ``min.insync.replicas=2``, so losing one broker loses no
acknowledged write; on the laptop's single broker, one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from platform_deploy.discovery import discover


async def create_missing_topics(bootstrap: str, wanted: dict[str, int]) -> list[str]:
    """Create those of ``wanted`` (name: partitions) that are missing; return their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            brokers = len((await admin.describe_cluster())["brokers"])
            replicas = min(3, brokers)
            configs = {"min.insync.replicas": "2"} if replicas == 3 else {}
            await admin.create_topics(
                [NewTopic(name, wanted[name], replicas, topic_configs=configs) for name in missing]
            )
        return missing
    finally:
        await admin.close()


def create_declared_topics(services_dir: Path, bootstrap: str) -> str:
    """Create missing topics (existing ones are left alone); return a one-line summary."""
    wanted: dict[str, int] = {}
    for info in discover(services_dir):
        for topic in info.topics:
            wanted[topic] = max(wanted.get(topic, 0), info.partitions)
    created = asyncio.run(create_missing_topics(bootstrap, wanted))
    return f"topics: {len(wanted)} declared, {len(created)} created {' '.join(created)}".rstrip()
