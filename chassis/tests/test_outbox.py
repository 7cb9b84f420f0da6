"""The outbox, the inbox and their migration on a real PostgreSQL (marker `postgres`: a
throwaway server from the machine's binaries; no Kafka needed here, see test_relay)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from event_chassis.database import Database, MigrationError
from event_chassis.health import Readiness
from event_chassis.inbox import first_delivery, once_per_message
from event_chassis.outbox import Outbox
from event_chassis.relay import ROWS
from event_chassis.testing import test_settings

from .example import Created, Requested, Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(test_settings(Settings, database_url=database_url), Readiness())
    await database.upgrade()
    yield database
    await database.close()


async def test_the_chassis_migration_makes_the_outbox_and_the_inbox_once(
    database: Database, database_url: str
) -> None:
    await database.upgrade()  # again: nothing to do

    connection = await asyncpg.connect(database_url)
    tables = {row["tablename"] for row in await connection.fetch("SELECT tablename FROM pg_tables")}
    heads = await connection.fetch("SELECT version_num FROM alembic_version")
    await connection.close()
    assert {"event_outbox", "event_inbox"} <= tables
    assert [row["version_num"] for row in heads] == ["event_chassis_0001"]


async def test_a_failing_migration_stops_with_one_line(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.py").write_text(
        'revision = "team_0001"\ndown_revision = None\nbranch_labels = ("team",)\n'
        "from alembic import op\n\n\ndef upgrade() -> None:\n"
        '    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")\n'
    )
    database = Database(test_settings(Settings, database_url=database_url), Readiness())
    try:
        with pytest.raises(MigrationError) as failure:
            await database.upgrade([tmp_path])
    finally:
        await database.close()

    line = str(failure.value)
    assert "\n" not in line
    assert line.startswith("database migration failed: ")
    assert "no_such_table" in line


async def test_readiness_names_an_unreachable_database() -> None:
    readiness = Readiness()
    database = Database(
        test_settings(Settings, database_url="postgresql://nobody@127.0.0.1:9/none"), readiness
    )
    try:
        assert not await database.check()
    finally:
        await database.close()

    assert readiness.problems["database"].startswith("PostgreSQL unreachable: ")


async def test_a_pooled_connection_the_server_ended_is_replaced_before_use(
    database: Database, database_url: str
) -> None:
    """What a PostgreSQL restart or a revoked login does to an idle pooled connection."""
    async with database.transaction() as session:
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar()
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.1)  # the loop reads the server's goodbye

    async with database.transaction() as session:
        assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar() != pid


async def test_an_event_is_written_with_the_state_or_not_at_all(database: Database) -> None:
    outbox = Outbox(buckets=16)
    tracer = TracerProvider().get_tracer(__name__)

    with tracer.start_as_current_span("POST /api/v1/requests") as span:
        async with database.transaction() as session:
            kept = await outbox.add(session, "example.created", Requested(name="kept"), key="k")
        with pytest.raises(RuntimeError):
            await write_then_fail(database, outbox)
        trace_id = format(span.get_span_context().trace_id, "032x")

    connection = await asyncpg.connect(database.url.replace("+asyncpg", ""))
    rows = await connection.fetch(
        "SELECT id, aggregateid, type, payload, tracingspancontext FROM event_outbox"
    )
    await connection.close()
    [row] = rows
    assert row["id"] == kept
    assert (row["aggregateid"], row["type"]) == ("k", "Requested")
    assert '"name": "kept"' in row["payload"]
    assert f"traceparent=00-{trace_id}-" in row["tracingspancontext"]


async def write_then_fail(database: Database, outbox: Outbox) -> None:
    async with database.transaction() as session:
        await outbox.add(session, "example.created", Requested(name="gone"), key="k")
        raise RuntimeError("the request failed after the write")


async def test_a_row_waits_for_every_older_transaction_still_open(database: Database) -> None:
    """A row committed while an older transaction is open is not taken before it: the
    older one may still add a row of the same key that must go first."""
    outbox = Outbox(buckets=1)
    dsn = database.url.replace("+asyncpg", "")
    relay = await asyncpg.connect(dsn)
    older = await asyncpg.connect(dsn)
    transaction = older.transaction()
    await transaction.start()
    await older.execute("SELECT pg_current_xact_id()")  # it has a transaction id now

    async with database.transaction() as session:
        await outbox.add(session, "t", Requested(name="second"), key="k")
    before = await relay.fetch(ROWS, [0], 100)
    await older.execute(
        "INSERT INTO event_outbox (id, aggregatetype, aggregateid, type, payload, bucket) "
        "VALUES (gen_random_uuid(), 't', 'k', 'Requested', '{}', 0)"
    )
    await transaction.commit()
    after = await relay.fetch(ROWS, [0], 100)
    await relay.close()
    await older.close()

    assert before == []
    assert len(after) == 2


async def test_a_message_changes_the_database_once_however_often_it_comes(
    database: Database,
) -> None:
    outbox = Outbox(buckets=16)
    handled: list[str] = []

    async def handle(event: Requested, session: AsyncSession) -> Created:
        handled.append(event.name)
        return Created(name=event.name, source_event_id=event.event_id)

    call = once_per_message(handle, database, outbox, "example", "example.created")
    event = Requested(name="acme")

    record = SimpleNamespace(
        topic="example.requested",
        partition=0,
        offset=7,
        key=b"acme",
        headers=[("message-id", b"m-1")],
    )

    await asyncio.gather(call(event, record), call(event, record))
    await call(event, record)

    async with database.transaction() as session:
        assert not await first_delivery(session, "example", "m-1")
        assert await first_delivery(session, "other-group", "m-1")  # each group its own
    connection = await asyncpg.connect(database.url.replace("+asyncpg", ""))
    results = await connection.fetchval("SELECT count(*) FROM event_outbox")
    await connection.close()
    assert handled == ["acme"]
    assert results == 1  # the result went out once, through the outbox
