"""The dead-letter topic: where a message goes when it cannot be processed.

It is published unchanged (same bytes, same key) with headers saying why and where it
came from, so it can be inspected and replayed. A record too large to go whole (its
dead-letter headers push it past the producer's or the topic's limit) goes as a
truncated copy, marked `x-dead-letter-truncated` with its original size: its reason,
origin and offset are kept, and the whole record is still on its topic until
retention removes it. Any other failure (the topic missing, no authorisation, Kafka
down) raises `DeadLetterUnavailableError`: the record's partition is held and tried
again later, with a metric and an alert, while the other partitions go on.
"""

import asyncio
import logging
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from faststream import BaseMiddleware
from faststream.kafka.publisher import DefaultPublisher

logger = logging.getLogger(__name__)

# Set by `BinaryHeaderGuard` on a record whose headers were not UTF-8.
UNDECODABLE_HEADERS = "x-dead-letter-undecodable-headers"
MAX_REASON_CHARS = 1000
TRUNCATED_BYTES = 16 * 1024  # what a truncated copy keeps of the record's value
PUBLISH_SECONDS = 10.0  # a dead-letter publish that takes longer has failed
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


class DeadLetterUnavailableError(Exception):
    """The dead-letter topic cannot take the record now: hold its partition."""


class DeadLetters:
    """Publishes records that cannot be processed to the dead-letter topic."""

    def __init__(self, publisher: DefaultPublisher, topic: str, consumer_group: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self.consumer_group = consumer_group

    async def send(self, record: Any, error: BaseException, *, attempts: int) -> bool:
        """Dead-letter `record` (an aiokafka ConsumerRecord) because of `error`.

        True if it went whole, False if as a truncated copy; `DeadLetterUnavailableError`
        if neither could be published.
        """
        why = {
            "x-dead-letter-error": type(error).__name__,
            "x-dead-letter-reason": str(error)[:MAX_REASON_CHARS],
            "x-dead-letter-attempts": str(attempts),
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
            "x-original-consumer-group": self.consumer_group,
        }
        value: bytes = record.value or b""
        whole = True
        try:
            await self._publish(value, record.key, {**original_headers(record), **why})
        except TOO_LARGE:
            whole = False
            truncated = {**why, "x-dead-letter-truncated": str(len(value))}
            await self._publish(value[:TRUNCATED_BYTES], record.key, truncated)
        logger.warning(
            "Dead-lettered %s[%s]@%s%s: %s",
            record.topic,
            record.partition,
            record.offset,
            "" if whole else f" (truncated from {len(value)} bytes)",
            why["x-dead-letter-reason"],
            extra={"error_type": why["x-dead-letter-error"], "attempts": attempts},
        )
        return whole

    async def _publish(self, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        try:
            async with asyncio.timeout(PUBLISH_SECONDS):
                await self.publisher.publish(value, key=key, headers=headers)
        except TOO_LARGE:
            raise
        except Exception as failure:
            raise DeadLetterUnavailableError(
                f"dead-letter topic {self.topic} did not take the record: {failure!r}"
            ) from failure


def original_headers(record: Any) -> dict[str, str]:
    return {name: (value or b"").decode() for name, value in record.headers or ()}


class BinaryHeaderGuard(BaseMiddleware):
    """Makes every header value a string FastStream can parse.

    FastStream decodes every header value as UTF-8 before any handler runs, and a
    failure there drops the whole batch (see `partitions`). Kafka allows a null header
    value (aiokafka gives None): it becomes empty. A value that is not UTF-8 is escaped
    and the record marked, so it is dead-lettered.
    """

    async def on_receive(self) -> None:
        # aiokafka's ConsumerRecord; a tuple of them for a batch (a list in tests).
        received: Any = self.msg
        records = received if isinstance(received, tuple | list) else (received,)
        for record in records:
            if record.headers:
                escape_headers(record)


def escape_headers(record: Any) -> None:
    headers: list[tuple[str, bytes]] = []
    undecodable: list[str] = []
    changed = False
    for name, value in record.headers:
        if value is None:
            value, changed = b"", True
        try:
            value.decode()
        except UnicodeDecodeError:
            undecodable.append(name)
            value = value.decode(errors="backslashreplace").encode()
        headers.append((name, value))
    if undecodable:
        headers.append((UNDECODABLE_HEADERS, ", ".join(undecodable).encode()))
    if undecodable or changed:
        record.headers = headers
