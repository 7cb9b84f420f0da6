"""Batched commits: an offset is committed only once its message's results are in Kafka."""

import asyncio
from collections.abc import Awaitable
from typing import Any, NamedTuple

from {{ cookiecutter.package_name }}.commits import CommitPolicy, TopicPartition

TOPIC = "requests"
PARTITION = TopicPartition(TOPIC, 0)


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int


class Consumer:
    """The part of aiokafka's consumer the policy uses, recording what it is asked."""

    def __init__(self) -> None:
        self.commits: list[dict[Any, int]] = []
        self.seeks: list[tuple[Any, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(offsets)

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset))

    def assignment(self) -> set[Any]:
        return {PARTITION}


def delivered() -> "asyncio.Future[None]":
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def handle(
    policy: CommitPolicy, consumer: Consumer, offset: int, *acks: Awaitable[Any]
) -> None:
    await policy.handled(consumer, Record(TOPIC, 0, offset), list(acks))


async def test_commits_the_offset_after_the_last_delivered_message() -> None:
    policy, consumer = CommitPolicy(max_pending=100, interval=60, idle=60), Consumer()
    for offset in range(3):
        await handle(policy, consumer, offset, delivered())

    assert consumer.commits == []  # batched, not one commit per message
    await policy.close()

    assert consumer.commits == [{PARTITION: 3}]


async def test_waits_for_kafka_to_acknowledge_the_result_before_committing() -> None:
    policy, consumer = CommitPolicy(max_pending=100, interval=60, idle=60), Consumer()
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await handle(policy, consumer, 0, ack)

    flushing = asyncio.create_task(policy.flush())
    await asyncio.sleep(0.05)
    assert consumer.commits == []
    ack.set_result(None)
    await flushing

    assert consumer.commits == [{PARTITION: 1}]
    await policy.close()


async def test_a_result_kafka_refused_rewinds_and_nothing_past_it_is_committed() -> None:
    policy, consumer = CommitPolicy(max_pending=100, interval=60, idle=60), Consumer()
    refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    refused.set_exception(RuntimeError("broker said no"))
    await handle(policy, consumer, 0, delivered())
    await handle(policy, consumer, 1, refused)
    await handle(policy, consumer, 2, delivered())
    await policy.flush()

    assert consumer.commits == [{PARTITION: 1}]
    assert consumer.seeks == [(PARTITION, 1)]

    await handle(policy, consumer, 2, delivered())  # fetched before the rewind: ignored
    await handle(policy, consumer, 1, delivered())  # handled again
    await policy.close()

    assert consumer.commits[-1] == {PARTITION: 2}


async def test_commits_every_max_pending_messages() -> None:
    policy, consumer = CommitPolicy(max_pending=2, interval=60, idle=60), Consumer()
    for offset in range(4):
        await handle(policy, consumer, offset, delivered())

    assert consumer.commits == [{PARTITION: 2}, {PARTITION: 4}]
    await policy.close()


async def test_commits_soon_after_the_stream_pauses() -> None:
    policy, consumer = CommitPolicy(max_pending=100, interval=60, idle=0.01), Consumer()
    await handle(policy, consumer, 0, delivered())
    await asyncio.sleep(0.2)

    assert consumer.commits == [{PARTITION: 1}]
    await policy.close()


async def test_commits_every_interval_under_a_steady_stream() -> None:
    policy, consumer = CommitPolicy(max_pending=1000, interval=0.1, idle=60), Consumer()
    for offset in range(30):
        await handle(policy, consumer, offset, delivered())
        await asyncio.sleep(0.01)

    assert 1 <= len(consumer.commits) <= 4
    await policy.close()
    assert consumer.commits[-1] == {PARTITION: 30}
