"""A rebalance waits for the batch in flight, so it commits before the partitions move."""

import asyncio
import time
from types import SimpleNamespace

from fastapi import FastAPI
from faststream._internal.endpoint.subscriber.utils import MultiLock

from value_architect.rebalance import FinishBatchOnRevoke


async def test_revoke_waits_for_the_batch_in_flight() -> None:
    listener = FinishBatchOnRevoke(timeout=5.0)
    listener.subscriber = SimpleNamespace(lock=MultiLock())
    listener.subscriber.lock.acquire()
    asyncio.get_running_loop().call_later(0.3, listener.subscriber.lock.release)

    started = time.monotonic()
    await listener.on_partitions_revoked({"partition"})

    assert 0.25 <= time.monotonic() - started < 2.0


async def test_revoke_waits_no_longer_than_its_timeout() -> None:
    listener = FinishBatchOnRevoke(timeout=0.2)
    listener.subscriber = SimpleNamespace(lock=MultiLock())
    listener.subscriber.lock.acquire()  # a batch that never finishes

    started = time.monotonic()
    await listener.on_partitions_revoked({"partition"})

    assert time.monotonic() - started < 1.0


def test_every_consumer_has_the_listener_of_its_own_subscriber(app: FastAPI) -> None:
    subscribers = app.state.broker.subscribers
    wired = [s for s in subscribers if isinstance(s._listener, FinishBatchOnRevoke)]

    assert len(wired) == app.state.settings.consumer_workers
    assert all(s._listener.subscriber is s for s in wired)
