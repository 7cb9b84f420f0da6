"""A steady stream of requests into Kafka, kept up through broker faults.

A thread of its own sends ``total`` keyed requests at ``rate`` per second with
acks=all and idempotence. A send that fails (no leader, too few in-sync
replicas, a timeout) is sent again a second later, so every request the test
counts on was acknowledged once; the time of each acknowledgement is kept, to
show that none came while the cluster could not have held it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque

from aiokafka import AIOKafkaProducer


def request(key: bytes) -> bytes:
    """The template's request event: a company whose value model is wanted."""
    return json.dumps({"company_name": key.decode(), "industry": "Testing"}).encode()


class SteadyLoad:
    """Sends ``total`` requests at ``rate``/s from a thread; see the module docstring."""

    def __init__(self, bootstrap: str, topic: str, total: int, rate: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.keys = [f"req-{i:06d}".encode() for i in range(total)]
        self.rate = rate
        self.acked: dict[bytes, float] = {}  # key: monotonic time of its acknowledgement
        self.failed_sends = 0
        self._retry: deque[bytes] = deque()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def join(self, timeout: float) -> bool:
        """Wait until every request is acknowledged; False after ``timeout``."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for at in list(self.acked.values()) if start <= at <= end)

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=5_000,
        )
        await producer.start()
        try:
            tasks: set[asyncio.Task[None]] = set()
            fresh = deque(self.keys)
            started = time.monotonic()
            while fresh or self._retry or tasks:
                due = int((time.monotonic() - started) * self.rate) - (len(self.keys) - len(fresh))
                for _ in range(min(max(due, 0), len(fresh))):
                    tasks.add(asyncio.create_task(self._send(producer, fresh.popleft())))
                while self._retry:
                    tasks.add(asyncio.create_task(self._send(producer, self._retry.popleft())))
                tasks = {task for task in tasks if not task.done()}
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, key: bytes) -> None:
        try:
            await (await producer.send(self.topic, request(key), key=key))
        except Exception:  # any refusal: the same request again, a second later
            self.failed_sends += 1
            await asyncio.sleep(1.0)
            self._retry.append(key)
            return
        self.acked[key] = time.monotonic()
