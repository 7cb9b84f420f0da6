"""Readiness from the write path, without a server.

A write Kafka has not acknowledged for `kafka_write_ack_seconds` makes the service
unready; an acknowledgement, or nothing left waiting, makes it ready again. The
platform's two-brokers-down case (tests/test_kafka_cluster.py) shows the same
against a real three-broker cluster.
"""

import asyncio
from typing import Any, cast

from prometheus_client import CollectorRegistry, Gauge

from event_chassis.health import KAFKA_WRITES, KafkaMonitor, Readiness, Writes


def monitor(readiness: Readiness, writes: Writes) -> KafkaMonitor:
    connected = Gauge("connected", "", registry=CollectorRegistry())
    return KafkaMonitor(cast(Any, None), readiness, connected, 1.0, writes, ack_bound=0.05)


async def test_a_write_waiting_past_the_bound_makes_the_service_unready() -> None:
    readiness, writes = Readiness(), Writes()
    readiness.problems.clear()
    check = monitor(readiness, writes).check_writes
    first, retry = asyncio.Event(), asyncio.Event()

    async def write(acknowledged: asyncio.Event) -> None:
        with writes.waiting():
            await acknowledged.wait()

    task = asyncio.create_task(write(first))
    await asyncio.sleep(0.01)
    check()
    assert readiness.ready  # waiting, but not yet past the bound
    await asyncio.sleep(0.1)
    check()
    assert "Kafka has not acknowledged a write for" in readiness.problems[KAFKA_WRITES]

    retried = asyncio.create_task(write(retry))  # the first gives up; its retry waits anew
    first.set()  # ends without an acknowledgement, as a timed-out write does
    await task
    check()
    assert not readiness.ready, "a retry waiting afresh is no acknowledgement"

    writes.acknowledged()
    check()
    assert readiness.ready
    retry.set()
    await retried


async def test_nothing_left_waiting_makes_the_service_ready_again() -> None:
    readiness, writes = Readiness(), Writes()
    readiness.problems.clear()
    check = monitor(readiness, writes).check_writes
    with writes.waiting():
        await asyncio.sleep(0.1)
        check()
        assert not readiness.ready
    check()
    assert readiness.ready
