"""Results through aiokafka's batch API, against a real Kafka broker (marker `kafka`).

What the in-memory broker cannot show: that results leave in record batches,
each partitioned by its key as aiokafka's `send` would, in order, with their
headers, and that a full batch leaves at once and a new one is started.
"""

import os
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from event_chassis.health import Writes
from event_chassis.results import KafkaOutbox

pytestmark = pytest.mark.kafka

PARTITIONS = 3


Record = tuple[int, bytes, bytes, dict[str, bytes]]  # partition, key, value, headers


async def read(bootstrap: str, topic: str, count: int) -> list[Record]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Record] = []
    try:
        while len(found) < count:
            for records in (await consumer.getmany(timeout_ms=10_000)).values():
                found += [(r.partition, r.key, r.value, dict(r.headers)) for r in records]
        return found
    finally:
        await consumer.stop()


async def test_results_leave_in_batches_partitioned_by_key_in_order() -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"chassis-results-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    partitioner = DefaultPartitioner()
    # Batches of 2 KiB: the 300 results below fill about 50 of them.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=2048, partitioner=partitioner
    )
    await producer.start()
    try:
        outbox = KafkaOutbox(producer, partitioner, Writes())
        keys = [f"key-{i % 7}".encode() for i in range(300)]
        for i, key in enumerate(keys):
            sent = [("content-type", b"application/json"), ("n", str(i).encode())]
            await outbox.add(topic, b"%d" % i + b"." * 200, key, sent)
        assert len(outbox.sent) > 10  # full batches left while results were added
        assert await outbox.delivered() == len(keys)
    finally:
        await producer.stop()

    found = await read(bootstrap, topic, len(keys))

    assert len(found) == len(keys)
    for partition, key, value, headers in found:
        assert partition == partitioner(key, list(range(PARTITIONS)), [])  # as `send` would
        assert value.startswith(headers["n"] + b".")
        assert headers["content-type"] == b"application/json"
    by_key: dict[bytes, list[int]] = {}
    for _, key, _, headers in found:
        by_key.setdefault(key, []).append(int(headers["n"]))
    assert all(numbers == sorted(numbers) for numbers in by_key.values())  # in order
    assert sum(map(len, by_key.values())) == len(keys)
