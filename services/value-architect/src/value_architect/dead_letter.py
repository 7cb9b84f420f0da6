"""Retries and the dead-letter topic, as a FastStream middleware.

A message that can never succeed (not JSON, wrong schema, too large, a
header that is not UTF-8) goes straight to the dead-letter topic. A handler
error that may pass (a timeout, a dependency briefly down) is retried with
capped exponential backoff, then dead-lettered. Either way the handler
returns normally, so FastStream commits the offset and the consumer goes on.
If even the dead-letter publish fails, the error propagates and FastStream
seeks back, so the message is redelivered rather than lost. Retries hold up
only the partitions of one consumer (see `handlers`).
"""

import asyncio
import logging
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka.message import KafkaMessage
from faststream.kafka.publisher import DefaultPublisher
from faststream.types import AsyncFuncAny
from pydantic import ValidationError

logger = logging.getLogger(__name__)


class PoisonMessageError(Exception):
    """The message can never be processed; retrying would not help."""


class DeadLetterPolicy:
    """Builds the per-message middleware; holds what every message shares."""

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

    def __call__(self, msg: Any, /, **kwargs: Any) -> "DeadLetterMiddleware":
        return DeadLetterMiddleware(msg, policy=self, **kwargs)

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_seconds * 2.0 ** (attempt - 1), self.max_backoff_seconds)


class DeadLetterMiddleware(BaseMiddleware):
    def __init__(self, msg: Any, /, *, policy: DeadLetterPolicy, **kwargs: Any) -> None:
        super().__init__(msg, **kwargs)
        self.policy = policy
        self.undecodable_headers: list[str] = []

    async def on_receive(self) -> None:
        """Make the record's headers parseable before FastStream parses them.

        FastStream decodes every header as UTF-8, outside any middleware: one
        binary header would make the message neither handled nor dead-lettered.
        Such values are escaped here, and `consume_scope` dead-letters the message.
        """
        record: Any = self.msg  # aiokafka's ConsumerRecord (a tuple of them for batches)
        if isinstance(record, tuple) or not getattr(record, "headers", None):
            return
        headers = []
        for name, value in record.headers:
            try:
                (value or b"").decode()
            except UnicodeDecodeError:
                self.undecodable_headers.append(name)
                value = value.decode(errors="backslashreplace").encode()
            headers.append((name, value or b""))
        record.headers = headers

    async def consume_scope(self, call_next: AsyncFuncAny, msg: KafkaMessage) -> Any:  # type: ignore[override]
        if self.undecodable_headers:
            error = PoisonMessageError(f"headers not UTF-8: {', '.join(self.undecodable_headers)}")
            return await self._dead_letter(msg, error, attempts=0)
        if len(msg.body) > self.policy.max_event_bytes:
            error = PoisonMessageError(
                f"message of {len(msg.body)} bytes exceeds {self.policy.max_event_bytes}"
            )
            return await self._dead_letter(msg, error, attempts=0)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call_next(msg)
            except (ValidationError, PoisonMessageError) as error:
                return await self._dead_letter(msg, error, attempts=attempt)
            except Exception as error:
                if attempt > self.policy.max_retries:
                    return await self._dead_letter(msg, error, attempts=attempt)
                delay = self.policy.backoff(attempt)
                logger.warning("Handler failed (%r); retry %d in %.2fs", error, attempt, delay)
                await asyncio.sleep(delay)

    async def _dead_letter(self, msg: KafkaMessage, error: Exception, *, attempts: int) -> None:
        record = msg.raw_message
        if isinstance(record, tuple):
            raise TypeError("batch subscribers are not supported")
        headers = {
            **{key: value for key, value in msg.headers.items() if isinstance(value, str)},
            "x-dead-letter-error": type(error).__name__,
            "x-dead-letter-reason": str(error)[:1000],
            "x-dead-letter-attempts": str(attempts),
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
            "x-original-consumer-group": self.policy.consumer_group,
        }
        await self.policy.publisher.publish(msg.body, key=record.key, headers=headers)
        logger.warning(
            "Dead-lettered %s[%s]@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            headers["x-dead-letter-reason"],
        )
