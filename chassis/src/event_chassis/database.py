"""The service's PostgreSQL: one async engine, a transaction per unit of work, readiness.

`Database(settings, readiness)` connects lazily (SQLAlchemy 2 with asyncpg); the service
answers, not ready with the reason, while PostgreSQL is away, and a watch task checks it
every `DATABASE_CHECK_INTERVAL_SECONDS`. `upgrade()` brings the schema to the newest
revision with Alembic: the chassis' own tables (the outbox and the inbox, in `migrations/`)
and the team's, whose versions folder the service names.

Every new connection logs in with the DSN current then (`settings.database_dsn()`): the
file's, read again, or OpenBao's short-lived credentials (`VAULT_DATABASE_ROLE`, see
`event_chassis.secrets`), which rotate without failing a request.

Needs the `postgres` extra: `pip install 'event-chassis[postgres]'`.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from .health import Readiness
from .outbox import Outbox
from .secrets import database_credentials
from .settings import ServiceSettings

logger = logging.getLogger(__name__)

DATABASE = "database"
CONNECT_SECONDS = 5  # a request waits no longer for a connection while PostgreSQL is away
# No statement waits forever: a connection left half-open by a restart raises instead.
COMMAND_SECONDS = 30
# Errors that mean the server is away: asyncpg's connection and shut-down classes (SQLSTATE
# 08 and 57), SQLAlchemy's for a lost connection, and the socket's own.
UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    OperationalError,
    InterfaceError,
    PoolTimeoutError,  # no connection came within CONNECT_SECONDS
)
MIGRATIONS = Path(__file__).parent / "migrations"


class MigrationError(RuntimeError):
    """The schema could not be brought up to date: the service does not start."""


def async_url(url: str) -> str:
    """`postgresql://...` as SQLAlchemy's asyncpg URL (one DSN serves psql and the service)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, with the generation of the credentials it logged in with."""

    __slots__ = ("credentials",)
    credentials: int


class Database:
    """One engine per service; `transaction()` is one unit of work, committed on success."""

    def __init__(self, settings: ServiceSettings, readiness: Readiness) -> None:
        url = settings.database_dsn()
        if not url:
            raise ValueError("DATABASE_URL (or DATABASE_URL_FILE) is not set")
        self.settings = settings
        self.readiness = readiness
        self.interval = settings.database_check_interval_seconds
        # With VAULT_DATABASE_ROLE the DSN names host and database; OpenBao the user.
        self.credentials = database_credentials(url, readiness)
        if self.credentials is not None:
            settings.use_database_credentials(self.credentials.dsn)
        self.engine = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=self._connect,
            pool_size=settings.database_pool_size,
            pool_timeout=CONNECT_SECONDS,
        )
        event.listen(self.engine.sync_engine.pool, "checkout", closed_by_server)
        if self.credentials is not None:  # a check on every checkout, so only with rotation
            event.listen(self.engine.sync_engine.pool, "checkout", self._made_with_old_credentials)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.outbox = Outbox(settings.outbox_buckets)  # events written with the state
        self._watch: asyncio.Task[None] | None = None
        self.reachable = asyncio.Event()  # set once PostgreSQL has answered
        readiness.fail(DATABASE, "PostgreSQL not checked yet")

    @property
    def url(self) -> str:
        """SQLAlchemy's URL of the current DSN (with the current credentials)."""
        return async_url(self.settings.database_dsn())

    def _generation(self) -> int:
        return self.credentials.generation if self.credentials is not None else 0

    async def _connect(self) -> Connection:
        """A new connection, logged in with the current DSN, noting which credentials."""
        generation, dsn = self._generation(), self.settings.database_dsn()
        connection: Connection = await asyncpg.connect(
            dsn,
            timeout=CONNECT_SECONDS,
            command_timeout=COMMAND_SECONDS,
            connection_class=Connection,
        )
        connection.credentials = generation
        return connection

    def _made_with_old_credentials(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        """A connection made with credentials since replaced is replaced at checkout
        (SQLAlchemy opens a new one and retries; nothing fails), before OpenBao revokes
        them and PostgreSQL ends their sessions.

        The generation is the one read with the DSN, before the login: a connection whose
        login was under way while the credentials rotated counts as old (it cost CI two
        503s under load when it was noted after the login).
        """
        if dbapi_connection.driver_connection.credentials < self._generation():
            raise DisconnectionError("made with older database credentials")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        async with self.sessions.begin() as session:
            yield session

    async def check(self) -> bool:
        """Ask PostgreSQL; readiness follows the answer."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            reason = f"PostgreSQL unreachable: {one_line(error)}"
            if self.readiness.problems.get(DATABASE) != reason:  # say it once, not every check
                logger.warning("%s", reason)
            self.readiness.fail(DATABASE, reason)
            return False
        self.readiness.ok(DATABASE)
        self.reachable.set()
        return True

    def start(self) -> None:
        if self.credentials is not None:
            self.credentials.start()
        self._watch = asyncio.create_task(self._watching(), name="database-monitor")

    async def _watching(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with suppress(asyncio.CancelledError):
                await self._watch
        if self.credentials is not None:
            await self.credentials.stop()
        await self.engine.dispose()

    async def upgrade(self, versions: Sequence[Path] = ()) -> None:
        """Apply every migration not applied yet: the chassis' and those in `versions`."""
        config = alembic_config(self.url, versions)
        try:
            await asyncio.to_thread(command.upgrade, config, "heads")
        except Exception as error:
            raise MigrationError(f"database migration failed: {one_line(error)}") from error


def closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed (a restart, an ended session) is replaced
    at checkout, before anyone uses it.

    In place of SQLAlchemy's `pool_pre_ping`, which costs three round trips per checkout
    with asyncpg (BEGIN, a query, ROLLBACK): asyncpg already knows that the server closed
    the socket. A connection that died silently (a network partition) fails its first
    statement instead, and SQLAlchemy then replaces every connection older than it.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("closed by the server")


def unreachable(error: BaseException) -> bool:
    """Whether `error` means PostgreSQL cannot be reached now (down, restarting, shutting
    down, a broken connection) rather than that the work is wrong: its whole chain."""
    seen: BaseException | None = error
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, UNREACHABLE) or getattr(seen, "connection_invalidated", False):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return False


async def unavailable(request: Request, error: Exception) -> Response:
    """HTTP 503 with the reason when PostgreSQL (or a connection) cannot be reached."""
    if not unreachable(error):
        raise error
    return JSONResponse({"detail": f"unavailable: {one_line(error)}"}, 503)


def one_line(error: BaseException) -> str:
    """An error as one line: SQLAlchemy's add the statement and a link on lines of their own."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def alembic_config(url: str, versions: Sequence[Path] = ()) -> Config:
    """Alembic's configuration for the chassis' migrations plus the team's `versions`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    locations = [str(MIGRATIONS / "versions"), *(str(path) for path in versions)]
    config.set_main_option("version_locations", " ".join(locations))
    config.set_main_option("path_separator", "space")
    config.attributes["url"] = url
    return config
