"""A service: the one object that wires the chassis together, and its lifecycle.

A team builds one in its `create_service()`: `Service(settings)`, then declares
what it consumes (`consume`), what it publishes (`publisher`) and its HTTP
routes (`include_router`). `Service.app` is the ASGI app; its lifespan runs
start-up and shut-down in this order:

- start: connect Kafka in the background (the app serves meanwhile, not
  ready), register in Consul, watch Kafka;
- stop (SIGTERM): stop fetching and let every consumer finish and commit its
  batch in flight (FastStream's `subscriber.stop()`, bounded by
  `SHUTDOWN_GRACE_SECONDS`) while leaving Consul; then close Kafka and flush
  telemetry.
"""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, FastAPI, Response
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.specification import AsyncAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel

from . import (
    __version__,
    _faststream,
    broker,
    clients,
    errors,
    health,
    metrics,
    runtime,
    tracing,
)
from .consumer import (
    BatchConsumer,
    EventTypes,
    Handler,
    MessagePipeline,
    batch_handler,
    on_a_thread_unless_async,
    records_only,
)
from .dead_letter import BinaryHeaderGuard, DeadLetters
from .discovery import ConsulFactory, ConsulRegistration, consul_client
from .partitions import Partitions
from .publishing import Publisher
from .rebalance import FinishBatchOnRevoke, InFlight
from .results import Results
from .retry import RetryPolicy
from .settings import ServiceSettings

if TYPE_CHECKING:  # the postgres extra: imported only by services that use it
    from .database import Database
    from .outbox import Outbox
    from .relay import OutboxRelay

E = TypeVar("E", bound=BaseModel)
logger = logging.getLogger(__name__)


class Service:
    """One event-driven service: broker, HTTP app, telemetry, health and registration."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        description: str = "",
        consul: ConsulFactory = consul_client,
    ) -> None:
        _faststream.verify()
        self.settings = settings
        self.description = description
        self.tracer_provider = tracing.create_tracer_provider(settings)
        self.tracer = self.tracer_provider.get_tracer("event_chassis", __version__)
        self.metrics = metrics.MessagingMetrics()
        self.readiness = health.Readiness()
        self.writes = health.Writes()  # awaiting Kafka's acknowledgement, for readiness
        self.broker = broker.create_broker(settings)
        # Consumers only: the header guard is not needed on the publishing path.
        self.consumers = KafkaRouter(middlewares=[BinaryHeaderGuard])
        self.broker.include_router(self.consumers)
        self.subscribers: list[Any] = []  # FastStream's batch subscribers
        self.batch_consumers: list[BatchConsumer] = []  # one each
        self.published_topics: list[str] = [settings.dead_letter_topic]
        self.results = Results(settings, self.writes)
        self.dead_letters = DeadLetters(
            self.broker.publisher(
                settings.dead_letter_topic,
                schema=bytes,
                description="Messages that could not be processed, with x-dead-letter-* headers.",
            ),
            settings.dead_letter_topic,
            settings.consumer_group,
        )
        self.registration = ConsulRegistration(settings, consul, readiness=self.readiness)
        self.monitor = health.KafkaMonitor(
            self.broker,
            self.readiness,
            self.metrics.kafka_connected,
            settings.kafka_check_interval_seconds,
            self.writes,
            settings.kafka_write_ack_seconds,
        )
        self._draining: asyncio.Task[None] | None = None
        self.database: Database | None = None  # see use_database
        self.outbox: Outbox | None = None
        self.relay: OutboxRelay | None = None
        self.migrations: list[Path] = []
        self.fatal: str | None = None  # why the service stopped itself (a migration failed)
        self.app = self._create_app()

    # -- what a service declares

    def consume(
        self,
        topic: str,
        handler: Handler,
        *,
        publish_to: str | None = None,
        retry: RetryPolicy | None = None,
        description: str | None = None,
    ) -> None:
        """Handle every event on `topic` with `handler`; publish its results to `publish_to`."""
        types = EventTypes.of(handler)
        if (types.produced is None) != (publish_to is None):
            raise ValueError(
                f"{topic}: a handler that returns events needs publish_to, and only such a one"
            )
        settings = self.settings
        output = self._declare_results(publish_to, types.produced)
        call = on_a_thread_unless_async(handler)
        if types.stateful:  # its result leaves through the outbox, with the state
            call = self._once_per_message(handler, output)
            output = None
        pipeline = MessagePipeline(
            topic=topic,
            group=settings.consumer_group,
            call=call,
            types=types,
            retry=retry
            or RetryPolicy(
                max_retries=settings.handler_max_retries,
                backoff_seconds=settings.handler_retry_backoff_seconds,
            ),
            results=self.results,
            output=output,
            dead_letters=self.dead_letters,
            tracer=self.tracer,
            metrics=self.metrics,
            max_event_bytes=settings.max_event_bytes,
        )
        # One consumer each in the group: Kafka shares the partitions among them, so a
        # message being retried holds up only its own consumer's partitions.
        client = clients.consumer(settings)
        labels = (topic, settings.consumer_group)
        for worker in range(client["consumers"]):
            name = f"consumer {topic}#{worker}"
            in_flight = InFlight()
            partitions = Partitions(
                name,
                hold_seconds=settings.partition_hold_seconds,
                max_hold_seconds=settings.partition_max_hold_seconds,
                failed=self.metrics.batches_read_again.labels(*labels),
                held=self.metrics.held_partitions.labels(*labels),
            )
            subscriber = self.consumers.subscriber(
                topic,
                group_id=client["group_id"],
                batch=True,
                max_records=client["max_records"],
                batch_timeout_ms=client["fetch_wait_ms"],
                ack_policy=AckPolicy.MANUAL,  # explicit offsets, see `partitions`
                auto_offset_reset=client["auto_offset_reset"],
                isolation_level=client["isolation_level"],
                heartbeat_interval_ms=client["heartbeat_interval_ms"],
                session_timeout_ms=client["session_timeout_ms"],
                max_poll_interval_ms=client["max_poll_interval_ms"],
                fetch_max_bytes=client["fetch_max_bytes"],
                max_partition_fetch_bytes=client["max_partition_fetch_bytes"],
                decoder=records_only,
                listener=FinishBatchOnRevoke(
                    name,
                    in_flight,
                    partitions,
                    self.readiness,
                    self.metrics.lag,
                    settings.consumer_group,
                    timeout=settings.shutdown_grace_seconds,
                ),
                include_in_schema=worker == 0,
                description=description or handler.__doc__,
            )
            _faststream.fetch_through(subscriber, partitions)
            consumer = BatchConsumer(
                pipeline, in_flight, partitions, clients.batch_seconds(settings)
            )
            subscriber(batch_handler(consumer, types.consumed))
            self.subscribers.append(subscriber)
            self.batch_consumers.append(consumer)

    def use_database(self, migrations: Sequence[Path] = ()) -> "Database":
        """Keep state in PostgreSQL (`DATABASE_URL[_FILE]`; the `postgres` extra).

        At start the schema is brought up to date (the chassis' outbox and inbox, and the
        team's `migrations` folders of Alembic versions), then the outbox relay runs.
        Handlers that take a session (`handle(event, session)`) are then idempotent.
        """
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.exc import TimeoutError as PoolTimeoutError

        from .database import Database, unavailable
        from .relay import OutboxRelay

        self.database = Database(self.settings, self.readiness)
        self.outbox = self.database.outbox
        for error in (DBAPIError, PoolTimeoutError, ConnectionError):
            self.app.add_exception_handler(error, unavailable)
        if self.settings.outbox_relay:
            self.relay = OutboxRelay(self.settings, self.metrics.registry, self.tracer, self.writes)
        self.migrations = list(migrations)
        return self.database

    def outbox_topic(self, topic: str, schema: type[BaseModel], *, description: str = "") -> None:
        """Declare a topic the service writes through its outbox, for its AsyncAPI document."""
        self.published_topics.append(topic)
        self.broker.publisher(topic, schema=schema, description=description)

    def _once_per_message(self, handler: Handler, output: str | None) -> Any:
        from .inbox import once_per_message

        if self.database is None or self.outbox is None:
            raise ValueError("a handler that takes a session needs service.use_database() first")
        return once_per_message(
            handler, self.database, self.outbox, self.settings.consumer_group, output
        )

    def publisher(self, topic: str, schema: type[E], *, description: str = "") -> Publisher[E]:
        """A typed, traced publisher of `schema` events to `topic` (for HTTP routes, say)."""
        self.published_topics.append(topic)
        return Publisher(
            self.broker.publisher(topic, schema=schema, description=description),
            topic,
            self.tracer,
            self.metrics.sent,
            self.readiness,
            self.writes,
        )

    def include_router(self, router: APIRouter) -> None:
        """Serve the service's own FastAPI routes."""
        self.app.include_router(router)

    def asyncapi(self) -> AsyncAPI:
        """The AsyncAPI document of every topic the service consumes and publishes."""
        return AsyncAPI(
            self.broker,
            title=self.settings.otel_service_name,
            version=self.settings.service_version,
            description=self.description,
        )

    # -- lifecycle

    def begin_drain(self) -> None:
        """Stop fetching now (SIGTERM); the lifespan waits for the drain to finish."""
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        await asyncio.gather(*(subscriber.stop() for subscriber in self.subscribers))

    async def _drained(self) -> None:
        if self._draining is not None:
            await self._draining

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        start = self._connect() if self.database is None else self._start_with_database()
        tasks = [asyncio.create_task(start, name="start")]
        if self.settings.gc_tuning:
            runtime.tune_collector()
            freeze = runtime.freeze_once_ready(self.readiness)
            tasks.append(asyncio.create_task(freeze, name="gc-freeze"))
        if self.settings.consul_enabled:
            self.registration.start()
        try:
            yield
        finally:
            self.begin_drain()
            await asyncio.gather(
                self.registration.stop() if self.settings.consul_enabled else asyncio.sleep(0),
                self._drained(),
            )
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            if self.relay is not None:
                await self.relay.stop()
            await self.monitor.stop()
            await self.results.stop()
            await self.broker.stop()
            if self.database is not None:
                await self.database.close()
            self.tracer_provider.shutdown()

    async def _start_with_database(self) -> None:
        """Migrate (waiting for PostgreSQL meanwhile), then Kafka and the outbox relay.

        A migration that fails for another reason than an unreachable server stops the
        service: `fatal` says why, and `run` exits with it.
        """
        from .database import MigrationError

        if self.database is None:
            return
        self.database.start()
        await self.database.reachable.wait()
        try:
            await self.database.upgrade(self.migrations)
        except MigrationError as error:
            self.fatal = str(error)
            logger.critical("%s", error)
            signal.raise_signal(signal.SIGTERM)
            return
        if self.relay is not None:
            self.relay.start()
        await self._connect()

    async def _connect(self) -> None:
        await broker.connect(
            self.broker, self.results, self.readiness, self.metrics.kafka_connected
        )
        self.monitor.start()

    # -- wiring

    def _declare_results(self, topic: str | None, schema: type[BaseModel] | None) -> str | None:
        if topic is None:
            return None
        self.published_topics.append(topic)
        documented = self.broker.publisher(
            topic, schema=schema, description="Results of the handler."
        )
        self.results.declare(topic, documented)
        return topic

    def _asyncapi_router(self) -> APIRouter:
        """/asyncapi.json and /asyncapi.yaml: the contract, next to /docs and /openapi.json."""
        from .contract import document, to_yaml

        router = APIRouter(include_in_schema=False)

        @router.get("/asyncapi.json")
        async def asyncapi_json() -> dict[str, Any]:
            return document(self)

        @router.get("/asyncapi.yaml")
        async def asyncapi_yaml() -> Response:
            return Response(to_yaml(document(self)), media_type="application/yaml")

        return router

    def _create_app(self) -> FastAPI:
        settings = self.settings
        app = FastAPI(
            title=settings.otel_service_name,
            version=settings.service_version,
            description=self.description,
            lifespan=self._lifespan,
            max_body_size=settings.max_request_body_bytes,  # larger bodies get 413
        )
        errors.install(app)
        app.include_router(health.create_router(self.readiness))
        app.include_router(self._asyncapi_router())
        app.include_router(metrics.create_router(self.metrics.registry))
        app.add_middleware(metrics.HttpMetricsMiddleware, registry=self.metrics.registry)
        # One server span per request: the instrumentation's default adds two more
        # ("http receive", "http send") that say nothing a trace reader needs.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            excluded_urls="/health/.*,/metrics",
            exclude_spans=["receive", "send"],
        )
        return app
