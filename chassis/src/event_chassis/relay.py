"""The outbox relay: publishes committed outbox rows to Kafka, in order per key.

It runs in every replica of the service (`OUTBOX_RELAY=false` leaves it out, for
change data capture instead: see the README), on one PostgreSQL connection of its own:

- **Order per key, with any number of replicas.** A key hashes to one of
  `OUTBOX_BUCKETS` buckets; a relay publishes only the buckets whose advisory lock it
  holds on its connection, in write order. If it dies, its connection and locks go,
  and another relay takes the buckets over at its next round.
- **Never a row whose transaction is not yet visible**, nor one that an older, still
  open transaction could overtake: a row is taken once its `txid` is below the
  snapshot's xmin (`pg_snapshot_xmin(pg_current_snapshot())`).
- **New credentials** (a rotated DATABASE_URL_FILE, OpenBao's next lease): it connects
  again with them within a second, before the old ones are revoked.
- **Wakes on LISTEN/NOTIFY** (a trigger notifies at commit), polls every
  `OUTBOX_POLL_SECONDS` as a fall-back; publishes a batch, then marks it published.
- **Kafka away:** rows wait, the relay backs off; nothing counts against a row. A row
  Kafka refuses (too large, a topic it may not write) is retried with backoff, holding
  back only later rows of its key, and after `OUTBOX_MAX_ATTEMPTS` goes to the
  dead-letter topic with the reason.
- **One Kafka transaction per round** (transactional id `<service id>-outbox`): readers
  of committed records (the chassis' consumers) never see a round that did not commit, so
  a relay that dies after Kafka took its records, before Kafka answered, leaves them
  aborted and the next relay publishes them once. A row is published twice only if the
  relay dies between Kafka's commit and the `published_at` update.
- Records carry a `message-id` header (the row's id, for the consumer's inbox) and the
  writer's trace context, through a producer span that is a child of the writer's span.
"""

import asyncio
import logging
import random
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Counter, Gauge

from . import clients
from .database import COMMAND_SECONDS, CONNECT_SECONDS
from .health import Writes
from .security import aiokafka_security
from .settings import ServiceSettings
from .tracing import kafka_headers

logger = logging.getLogger(__name__)

LOCKS = 0x6F7574  # advisory lock class of the outbox's buckets ("out")
JSON = "application/json"
# A relay that died with a transaction open holds back readers of committed records on its
# partitions until Kafka aborts it, this long after it began (a new relay has a new id).
TRANSACTION_TIMEOUT_MS = 10_000
# Kafka or PostgreSQL away: try again at least this often, so a backlog starts draining soon
# after they return (a row Kafka refused waits as long).
MAX_BACKOFF_SECONDS = 5.0

# PostgreSQL or Kafka away (OSError also covers a statement past COMMAND_SECONDS: asyncio's
# TimeoutError): said as a warning. Anything else is logged with its traceback. asyncpg
# raises InternalClientError ("cannot switch to state 12") on a connection the server
# ended while it was idle (MagicStack/asyncpg#1069).
AWAY = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    KafkaError,
)

CLAIM = """SELECT b FROM unnest($2::int[]) AS b WHERE pg_try_advisory_lock($1, b)"""
ROWS = """
SELECT position, id, aggregatetype, aggregateid, type, payload::text AS payload,
       tracingspancontext, attempts, next_attempt_at, last_error
FROM event_outbox
WHERE published_at IS NULL AND bucket = ANY($1::int[])
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY position
LIMIT $2
"""
PUBLISHED = "UPDATE event_outbox SET published_at = now() WHERE position = ANY($1::bigint[])"
DEAD = "UPDATE event_outbox SET published_at = now(), dead_lettered = true WHERE position = $1"
FAILED = """
UPDATE event_outbox SET attempts = attempts + 1, last_error = $2,
       next_attempt_at = now() + make_interval(secs => $3)
WHERE position = $1
"""
BACKLOG = """
SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
FROM event_outbox WHERE published_at IS NULL
"""
PRUNE_OUTBOX = "DELETE FROM event_outbox WHERE published_at < now() - make_interval(secs => $1)"
PRUNE_INBOX = "DELETE FROM event_inbox WHERE received_at < now() - make_interval(secs => $1)"


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.backlog = Gauge("outbox_backlog", "Outbox rows not yet published.", registry=registry)
        self.oldest = Gauge(
            "outbox_oldest_unpublished_seconds",
            "Age of the oldest outbox row not yet published.",
            registry=registry,
        )
        self.published = Counter(
            "outbox_published", "Outbox rows published to Kafka.", registry=registry
        )
        self.failures = Counter(
            "outbox_publish_failures",
            "Outbox rows Kafka refused or could not take, by error type.",
            ["reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "outbox_dead_lettered",
            "Outbox rows sent to the dead-letter topic after their attempts.",
            registry=registry,
        )
        self.buckets = Gauge(
            "outbox_buckets_owned", "Buckets this relay publishes.", registry=registry
        )


class OutboxRelay:
    """Publishes the outbox of one service's database."""

    def __init__(
        self,
        settings: ServiceSettings,
        registry: CollectorRegistry,
        tracer: trace.Tracer,
        writes: Writes,
    ) -> None:
        self.settings = settings
        self.writes = writes
        self.metrics = RelayMetrics(registry)
        self.tracer = tracer
        self.wake = asyncio.Event()
        self.connection: asyncpg.Connection | None = None
        self.dsn = ""  # the connection's, to notice new credentials
        self.producer: AIOKafkaProducer | None = None
        self.owned: set[int] = set()
        self.stopping = False
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = datetime.min.replace(tzinfo=UTC)
        self._measured_at = datetime.min.replace(tzinfo=UTC)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Publish what was committed before the stop (bounded by the shut-down grace):
        the service stops its consumers first, so their last rows leave with it."""
        self.stopping = True
        self.wake.set()
        if self._task is not None:
            with suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, self.settings.shutdown_grace_seconds)
        await self._disconnect()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def run(self) -> None:
        backoff = 0.25
        while True:
            draining = self.stopping  # asked before this round began: it is a last one
            try:
                await self._connect()
                published = await self.round()
                await self._housekeeping()
            except Exception as error:  # the relay outlives any one failure, expected or not
                if isinstance(error, AWAY):
                    logger.warning("Outbox relay: %r; again in %.1fs", error, backoff)
                else:
                    logger.exception("Outbox relay: unexpected %r; again in %.1fs", error, backoff)
                await self._disconnect()  # its locks go with it; claimed again later
                if self.stopping:
                    return  # the rows wait for the next relay
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = 0.25
            if draining and published < self.settings.outbox_batch_size:
                return  # drained
            if published < self.settings.outbox_batch_size and not self.stopping:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.outbox_poll_seconds)
                self.wake.clear()

    async def round(self) -> int:
        """Claim free buckets, publish a batch of what is due in them; how many published."""
        connection = await self._connect()
        free = [b for b in range(self.settings.outbox_buckets) if b not in self.owned]
        if free:
            self.owned |= {row["b"] for row in await connection.fetch(CLAIM, LOCKS, free)}
            self.metrics.buckets.set(len(self.owned))
        if not self.owned:
            return 0
        rows = await connection.fetch(ROWS, sorted(self.owned), self.settings.outbox_batch_size)
        return await self._publish(connection, rows) if rows else 0

    async def _publish(self, connection: asyncpg.Connection, rows: Sequence[Any]) -> int:
        """Send what is due of ``rows`` in one Kafka transaction, then mark it published.

        Readers that read committed records only (the chassis' consumers) see a round's
        records once it commits, and never those of a round that did not: a relay that
        dies with its round in flight, after Kafka took the records but before it
        answered, leaves them aborted rather than duplicated by the next relay's round.
        """
        producer = await self._producer()
        now = datetime.now(UTC)
        held: set[str] = set()  # keys whose earlier row must go first
        sent: list[tuple[Any, asyncio.Future[Any]]] = []
        refused: list[tuple[Any, BaseException]] = []  # before it was sent (too large, say)
        dead: set[int] = set()  # positions of rows sent to the dead-letter topic
        await producer.begin_transaction()
        try:
            for row in rows:
                key = row["aggregateid"] or str(row["id"])
                if key in held:
                    continue
                if row["next_attempt_at"] is not None and row["next_attempt_at"] > now:
                    held.add(key)
                    continue
                if row["attempts"] >= self.settings.outbox_max_attempts:
                    dead.add(row["position"])
                    record = self._dead_letter_record(row)
                else:
                    record = self._record(row)
                try:
                    sent.append((row, await producer.send(**record)))
                except KafkaError as error:
                    if _retriable(error):  # no metadata: Kafka is away
                        self.metrics.failures.labels(type(error).__name__).inc()
                        raise
                    refused.append((row, error))
                    held.add(key)
            outcomes: list[Any] = []
            if sent:  # as the results' outbox: an idle round waits for nothing
                with self.writes.waiting():
                    outcomes = await asyncio.gather(
                        *(future for _, future in sent), return_exceptions=True
                    )
            failed = [
                (row, outcome)
                for (row, _), outcome in zip(sent, outcomes, strict=True)
                if isinstance(outcome, BaseException)
            ]
            if away := [error for _, error in failed if _retriable(error)]:
                self.metrics.failures.labels(type(away[0]).__name__).inc(len(away))
                raise away[0]  # Kafka is away: the relay backs off; the rows keep their count
            if failed:  # Kafka refused a record it was sent: the round is undone
                await producer.abort_transaction()
            else:
                with self.writes.waiting():
                    await producer.commit_transaction()
        except BaseException:
            # Its successor, under the same transactional id, aborts what it left open.
            await self._drop_producer()
            raise
        for row, reason in refused + failed:
            await self._failed(connection, row, reason, dead_letter=row["position"] in dead)
        if failed:
            return 0  # the others go again next round
        self.writes.acknowledged()
        done = [row["position"] for row, _ in sent if row["position"] not in dead]
        if done:
            await connection.execute(PUBLISHED, done)
            self.metrics.published.inc(len(done))
        for row, _ in sent:
            if row["position"] in dead:
                await connection.execute(DEAD, row["position"])
                self.metrics.dead_lettered.inc()
                logger.error("Outbox row %s dead-lettered: %s", row["id"], row["last_error"])
        return len(done)

    def _record(self, row: Any) -> dict[str, Any]:
        """The Kafka record of a row, sent inside a producer span of the writer's trace."""
        carrier = dict(
            line.split("=", 1)
            for line in (row["tracingspancontext"] or "").splitlines()
            if "=" in line
        )
        topic = row["aggregatetype"]
        span = self.tracer.start_span(
            f"send {topic}", context=propagate.extract(carrier), kind=trace.SpanKind.PRODUCER
        )
        headers = kafka_headers(span, JSON)
        span.end()
        headers += [("message-id", str(row["id"]).encode()), ("event-type", row["type"].encode())]
        key = row["aggregateid"].encode() if row["aggregateid"] is not None else None
        return {"topic": topic, "value": row["payload"].encode(), "key": key, "headers": headers}

    async def _failed(
        self, connection: asyncpg.Connection, row: Any, error: BaseException, dead_letter: bool
    ) -> None:
        """Kafka refused ``row``: it waits a backoff, holding back only later rows of its key."""
        reason = type(error).__name__
        if dead_letter:
            logger.error("Outbox row %s could not be dead-lettered either: %r", row["id"], error)
            return
        self.metrics.failures.labels(reason).inc()
        backoff = min(0.5 * 2.0 ** row["attempts"], MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)  # noqa: S311
        logger.warning(
            "Outbox row %s refused by Kafka (%r); again in %.1fs", row["id"], error, backoff
        )
        await connection.execute(FAILED, row["position"], f"{reason}: {error}"[:1000], backoff)

    def _dead_letter_record(self, row: Any) -> dict[str, Any]:
        """The row for the dead-letter topic, with its last error; marked dead once sent."""
        headers = [
            ("x-dead-letter-error", b"OutboxPublishError"),
            ("x-dead-letter-reason", (row["last_error"] or "").encode()),
            ("x-dead-letter-attempts", str(row["attempts"]).encode()),
            ("x-original-topic", row["aggregatetype"].encode()),
            ("message-id", str(row["id"]).encode()),
        ]
        # The reason matters; the row keeps the whole payload. Well under the request limit.
        cut = min(16 * 1024, self.settings.kafka_producer_max_request_bytes // 2)
        value = row["payload"].encode()[:cut]
        key = row["aggregateid"].encode() if row["aggregateid"] is not None else None
        topic = self.settings.dead_letter_topic
        return {"topic": topic, "value": value, "key": key, "headers": headers}

    async def _housekeeping(self) -> None:
        """Once a second (not every round: a busy relay's rounds are milliseconds apart),
        the backlog's gauges and a new connection if the credentials changed; old rows
        pruned once a minute."""
        now = datetime.now(UTC)
        if now - self._measured_at < timedelta(seconds=1):
            return
        self._measured_at = now
        if self.settings.database_dsn() != self.dsn:
            logger.info("Outbox relay: new database credentials; connecting with them")
            await self._disconnect()  # before the old ones are revoked, which ends it
        connection = await self._connect()
        count, oldest = await connection.fetchrow(BACKLOG)
        self.metrics.backlog.set(count)
        self.metrics.oldest.set(float(oldest))
        if now - self._pruned_at > timedelta(minutes=1):
            self._pruned_at = now
            await connection.execute(PRUNE_OUTBOX, self.settings.outbox_retention_hours * 3600)
            await connection.execute(PRUNE_INBOX, self.settings.inbox_retention_days * 86400)

    async def _connect(self) -> asyncpg.Connection:
        if self.connection is not None and not self.connection.is_closed():
            return self.connection
        self.owned.clear()
        self.dsn = self.settings.database_dsn()
        self.connection = await asyncpg.connect(
            self.dsn, timeout=CONNECT_SECONDS, command_timeout=COMMAND_SECONDS
        )
        await self.connection.add_listener("event_outbox", lambda *_: self.wake.set())
        return self.connection

    async def _disconnect(self) -> None:
        self.owned.clear()
        self.metrics.buckets.set(0)
        if self.connection is not None:
            with suppress(Exception):
                await self.connection.close(timeout=5)
            self.connection = None

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                client_id=f"{self.settings.service_id}-outbox",
                transactional_id=f"{self.settings.service_id}-outbox",
                transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                **{**clients.producer(self.settings), "acks": "all"},
                **aiokafka_security(self.settings),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
        return self.producer

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            with suppress(Exception):
                await asyncio.wait_for(producer.stop(), CONNECT_SECONDS)


def _retriable(error: BaseException) -> bool:
    """Kafka away (or slow), not refusing the record: try the whole round again later."""
    return bool(getattr(error, "retriable", False)) or isinstance(error, TimeoutError)
