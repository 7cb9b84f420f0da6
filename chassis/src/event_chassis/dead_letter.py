"""The dead-letter topic: where a message goes when it cannot be processed.

It is published unchanged (same bytes, same key) with headers saying why and
where it came from, so it can be inspected and replayed. If even that publish
fails, the error propagates: the batch is consumed again rather than lost.
"""

import logging
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka.publisher import DefaultPublisher

logger = logging.getLogger(__name__)

# Set by `BinaryHeaderGuard` on a record whose headers were not UTF-8.
UNDECODABLE_HEADERS = "x-dead-letter-undecodable-headers"
MAX_REASON_CHARS = 1000


class DeadLetters:
    """Publishes records that cannot be processed to the dead-letter topic."""

    def __init__(self, publisher: DefaultPublisher, consumer_group: str) -> None:
        self.publisher = publisher
        self.consumer_group = consumer_group

    async def send(self, record: Any, error: BaseException, *, attempts: int) -> None:
        """Dead-letter `record` (an aiokafka ConsumerRecord) because of `error`."""
        headers = {
            **{name: (value or b"").decode() for name, value in record.headers},
            "x-dead-letter-error": type(error).__name__,
            "x-dead-letter-reason": str(error)[:MAX_REASON_CHARS],
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
            extra={"error_type": headers["x-dead-letter-error"], "attempts": attempts},
        )


class BinaryHeaderGuard(BaseMiddleware):
    """Escapes header values that are not UTF-8 before FastStream parses them.

    FastStream decodes every header as UTF-8 before any handler runs: one
    binary header would fail the whole batch, again and again. Such values are
    escaped here and the record is marked, so it is dead-lettered.
    """

    async def on_receive(self) -> None:
        # aiokafka's ConsumerRecord; a tuple of them for a batch (a list in tests).
        received: Any = self.msg
        records = received if isinstance(received, tuple | list) else (received,)
        for record in records:
            if record.headers:
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
