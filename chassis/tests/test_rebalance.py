"""A rebalance waits for the batch in flight, so it commits before the partitions move."""

import asyncio
import time

from aiokafka import TopicPartition

from event_chassis.health import Readiness
from event_chassis.metrics import MessagingMetrics
from event_chassis.partitions import Partitions
from event_chassis.rebalance import FinishBatchOnRevoke, InFlight

PARTITION = TopicPartition("topic", 0)


def listener(in_flight: InFlight, timeout: float = 5.0) -> FinishBatchOnRevoke:
    metrics = MessagingMetrics()
    partitions = Partitions(
        "consumer topic#0",
        hold_seconds=1,
        max_hold_seconds=30,
        failed=metrics.batches_read_again.labels("topic", "group"),
        held=metrics.held_partitions.labels("topic", "group"),
    )
    return FinishBatchOnRevoke(
        "consumer topic#0", in_flight, partitions, Readiness(), metrics.lag, "group", timeout
    )


async def test_revoke_waits_for_the_batch_in_flight() -> None:
    in_flight = InFlight()
    revoke = listener(in_flight)

    async def batch() -> None:
        with in_flight:
            await asyncio.sleep(0.3)

    handling = asyncio.create_task(batch())
    await asyncio.sleep(0)
    await revoke.on_partitions_revoked({PARTITION})

    assert handling.done()


async def test_revoke_waits_no_longer_than_its_timeout() -> None:
    in_flight = InFlight()
    in_flight.__enter__()  # a batch that never finishes

    started = time.monotonic()
    await listener(in_flight, timeout=0.2).on_partitions_revoked({PARTITION})

    assert in_flight.busy
    assert time.monotonic() - started < 5.0  # bounded: without the timeout it never returns


async def test_a_consumer_is_ready_once_it_has_its_partitions() -> None:
    revoke = listener(InFlight())
    problems = revoke.readiness.problems
    assert "consumer topic#0" in problems

    await revoke.on_partitions_assigned(set())  # more consumers than partitions: none

    assert "consumer topic#0" not in problems


async def test_the_lag_of_revoked_partitions_is_left_to_their_next_owner() -> None:
    revoke = listener(InFlight())
    revoke.lag.labels("topic", "0", "group").set(5)
    revoke.lag.labels("topic", "1", "group").set(7)

    await revoke.on_partitions_revoked({PARTITION})

    assert [sample.labels["partition"] for sample in next(iter(revoke.lag.collect())).samples] == [
        "1"
    ]
