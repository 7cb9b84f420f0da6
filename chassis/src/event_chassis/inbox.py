"""The idempotent inbox: a message changes the database once, however often it comes.

At-least-once delivery brings a message again after a rebalance, a crash or a seek
back. A handler that takes a database session (`async def handle(event, session)`) runs
in one transaction with the message's inbox row (`INSERT … ON CONFLICT DO NOTHING`):
a message seen before changes nothing, and its result is not published again. Its
result goes through the outbox in that same transaction, so the state change and the
result event are saved together; the Kafka offset is committed after the database.

A message's id is its `message-id` header (the outbox relay sets it, so a record the
producer sent twice counts once), else its topic, partition and offset.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .database import Database, one_line, unreachable
from .outbox import Outbox
from .retry import DependencyUnavailableError

INBOX = Table("event_inbox", MetaData(), Column("consumer_group", Text), Column("message_id", Text))
# One statement with the values as parameters: compiled once, not once per message.
CLAIM = insert(INBOX).on_conflict_do_nothing().returning(INBOX.c.message_id)
MESSAGE_ID = "message-id"

StatefulHandler = Callable[[Any, AsyncSession], Awaitable[BaseModel | None]]


def message_id(record: Any) -> str:
    for name, value in record.headers or ():
        if name == MESSAGE_ID and value:
            return str(value.decode(errors="replace"))
    return f"{record.topic}:{record.partition}:{record.offset}"


async def first_delivery(session: AsyncSession, group: str, message: str) -> bool:
    """Record `message` as handled by `group`; False if it was already."""
    result = await session.execute(CLAIM, {"consumer_group": group, "message_id": message})
    return result.first() is not None


def once_per_message(
    handler: StatefulHandler, database: Database, outbox: Outbox, group: str, output: str | None
) -> Callable[[BaseModel, Any], Awaitable[None]]:
    """`handler` in a transaction with the inbox; its result into the outbox for `output`."""

    async def call(event: BaseModel, record: Any) -> None:
        try:
            async with database.transaction() as session:
                if not await first_delivery(session, group, message_id(record)):
                    return  # handled before: nothing again
                result = await handler(event, session)
                if result is not None and output is not None:
                    key = record.key.decode(errors="replace") if record.key is not None else None
                    await outbox.add(session, output, result, key=key)
        except Exception as error:
            if unreachable(error):  # PostgreSQL away: wait for it, never dead-letter
                raise DependencyUnavailableError(f"PostgreSQL: {one_line(error)}") from error
            raise

    return call
