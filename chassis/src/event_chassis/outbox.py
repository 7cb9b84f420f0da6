"""The transactional outbox: an event is written in the caller's transaction and published
after that transaction commits, so state and event are saved together or not at all.

    async with database.transaction() as session:
        session.add(order)
        await outbox.add(session, "orders.placed", OrderPlaced(...), key=str(order.id))

The row keeps the writer's trace context, so the published record's trace continues
from the request that wrote it; `relay.OutboxRelay` publishes it. Its key picks one of
`OUTBOX_BUCKETS` buckets: one relay publishes a bucket at a time, in write order.
"""

import uuid
import zlib

from opentelemetry import propagate
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

# The columns a writer sets (the migration, migrations/versions, has them all).
OUTBOX = Table(
    "event_outbox",
    MetaData(),
    Column("id", UUID(as_uuid=True)),
    Column("aggregatetype", Text),
    Column("aggregateid", Text),
    Column("type", Text),
    Column("payload", JSONB),
    Column("tracingspancontext", Text),
    Column("bucket", Integer),
)
INSERT = insert(OUTBOX)


def bucket(key: str | None, message_id: uuid.UUID, buckets: int) -> int:
    """A stable bucket of the key (CRC-32: Python's `hash` differs between processes)."""
    if key is None:  # no order to keep: spread by the message
        return message_id.int % buckets
    return zlib.crc32(key.encode()) % buckets


def span_context() -> str | None:
    """The current trace context as Debezium's `tracingspancontext` reads it (properties)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return "\n".join(f"{name}={value}" for name, value in carrier.items()) or None


class Outbox:
    """Writes events to be published, inside the caller's transaction."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    async def add(
        self, session: AsyncSession, topic: str, event: BaseModel, *, key: str | None = None
    ) -> uuid.UUID:
        """Queue `event` for `topic`, keyed by `key`; its message id (a header when published)."""
        message_id = uuid.uuid4()
        values = {
            "id": message_id,
            "aggregatetype": topic,
            "aggregateid": key,
            "type": type(event).__name__,
            "payload": event.model_dump(mode="json"),
            "tracingspancontext": span_context(),
            "bucket": bucket(key, message_id, self.buckets),
        }
        # The values as parameters of one statement: compiled once, not once per event.
        await session.execute(INSERT, values)
        return message_id
