"""Shut-down: stop fetching, then wait (bounded) for the messages in flight."""

import asyncio
import time
from typing import Any

from fastapi import FastAPI
from faststream._internal.endpoint.subscriber.utils import MultiLock
from faststream.kafka import KafkaBroker

from value_architect import handlers


def in_flight_lock(app: FastAPI) -> Any:
    """FastStream's count of the messages a subscriber is handling.

    A running subscriber has one; the in-memory test broker never starts the
    subscribers, so the test gives one the lock it would have.
    """
    [subscriber, *_] = app.state.broker.subscribers
    subscriber.lock = MultiLock()
    return subscriber.lock


async def test_stop_fetching_stops_every_subscriber(app: FastAPI, broker: KafkaBroker) -> None:
    handlers.stop_fetching(app.state.broker)

    assert all(not subscriber.running for subscriber in app.state.broker.subscribers)


async def test_drain_waits_for_the_message_in_flight(app: FastAPI, broker: KafkaBroker) -> None:
    lock = in_flight_lock(app)
    lock.acquire()
    asyncio.get_running_loop().call_later(0.3, lock.release)

    started = time.monotonic()
    await handlers.drain(app.state.broker, grace=5.0)

    assert 0.25 <= time.monotonic() - started < 2.0


async def test_drain_gives_up_after_the_grace_period(app: FastAPI, broker: KafkaBroker) -> None:
    in_flight_lock(app).acquire()  # a message that never finishes

    started = time.monotonic()
    await handlers.drain(app.state.broker, grace=0.3)

    assert time.monotonic() - started < 1.0
