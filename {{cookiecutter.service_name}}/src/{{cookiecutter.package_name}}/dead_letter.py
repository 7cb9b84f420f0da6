"""Retries and the dead-letter topic, one message at a time within a batch.

A message that can never succeed (not JSON, wrong schema, too large, a
header that is not UTF-8) goes straight to the dead-letter topic. A handler
error that may pass (a timeout, a dependency briefly down) is retried with
capped exponential backoff, then dead-lettered. Either way the rest of the
batch goes on and is committed. If even the dead-letter publish fails, the
error propagates: FastStream seeks back and the batch is consumed again
rather than lost. Retries hold up only one consumer's partitions (see
`handlers`).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream import BaseMiddleware
from faststream.kafka.publisher import DefaultPublisher
from pydantic import ValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Set by `BinaryHeaderGuard` on a record whose headers were not UTF-8.
UNDECODABLE_HEADERS = "x-dead-letter-undecodable-headers"


class PoisonMessageError(Exception):
    """The message can never be processed; retrying would not help."""


class DeadLetterPolicy:
    """Runs the work on each message: retry, or dead-letter and go on."""

    def __init__(
        self,
        publisher: DefaultPublisher,
        *,
        consumer_group: str,
        max_retries: int,
        backoff_seconds: float,
        max_event_bytes: int,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self.publisher = publisher
        self.consumer_group = consumer_group
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_event_bytes = max_event_bytes

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_seconds * 2.0 ** (attempt - 1), self.max_backoff_seconds)

    async def run(self, record: Any, work: Callable[[bytes], Awaitable[T]]) -> T | None:
        """`work(record.value)`, retried as needed; None once the record is dead-lettered.

        `record` is an aiokafka `ConsumerRecord`.
        """
        value: bytes = record.value or b""
        undecodable = dict(record.headers).get(UNDECODABLE_HEADERS)
        if undecodable:
            error = PoisonMessageError(f"headers not UTF-8: {undecodable.decode()}")
            await self.dead_letter(record, error, attempts=0)
            return None
        if len(value) > self.max_event_bytes:
            error = PoisonMessageError(
                f"message of {len(value)} bytes exceeds {self.max_event_bytes}"
            )
            await self.dead_letter(record, error, attempts=0)
            return None
        attempt = 0
        while True:
            attempt += 1
            try:
                return await work(value)
            except (ValidationError, PoisonMessageError) as error:
                await self.dead_letter(record, error, attempts=attempt)
                return None
            except Exception as error:
                if attempt > self.max_retries:
                    await self.dead_letter(record, error, attempts=attempt)
                    return None
                delay = self.backoff(attempt)
                logger.warning("Handler failed (%r); retry %d in %.2fs", error, attempt, delay)
                await asyncio.sleep(delay)

    async def dead_letter(self, record: Any, error: Exception, *, attempts: int) -> None:
        headers = {
            **{name: (value or b"").decode() for name, value in record.headers},
            "x-dead-letter-error": type(error).__name__,
            "x-dead-letter-reason": str(error)[:1000],
            "x-dead-letter-attempts": str(attempts),
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
            "x-original-consumer-group": self.consumer_group,
        }
        await self.publisher.publish(record.value or b"", key=record.key, headers=headers)
        logger.warning(
            "Dead-lettered %s[%s]@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            headers["x-dead-letter-reason"],
        )


class BinaryHeaderGuard(BaseMiddleware):
    """Escapes header values that are not UTF-8 before FastStream parses them.

    FastStream decodes every header as UTF-8 before any handler runs: one
    binary header would fail the whole batch, again and again. Such values
    are escaped here and the record is marked, so `DeadLetterPolicy` sends
    it to the dead-letter topic.
    """

    async def on_receive(self) -> None:
        # aiokafka's ConsumerRecord; a tuple of them for a batch (a list in tests).
        received: Any = self.msg
        records = received if isinstance(received, tuple | list) else (received,)
        for record in records:
            if getattr(record, "headers", None):
                escape_binary_headers(record)


def escape_binary_headers(record: Any) -> None:
    headers: list[tuple[str, bytes]] = []
    undecodable: list[str] = []
    for name, value in record.headers:
        try:
            (value or b"").decode()
        except UnicodeDecodeError:
            undecodable.append(name)
            value = value.decode(errors="backslashreplace").encode()
        headers.append((name, value or b""))
    if undecodable:
        headers.append((UNDECODABLE_HEADERS, ", ".join(undecodable).encode()))
        record.headers = headers
