"""The one place that wires the service together and runs its start-up and shut-down.

FastStream's `KafkaRouter` for FastAPI is deprecated since 0.7.3. Rather than
add the separate `faststream-fastapi` package, a plain FastAPI lifespan starts
and stops the broker: one less dependency, and the order of start-up and
shut-down steps is spelled out below instead of hidden in a plugin.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from . import api, discovery, events, handlers, health, metrics, telemetry
from .config import Settings
from .security import kafka_security

logger = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 256 * 1024  # well under Kafka's default 1 MiB record batch limit


def create_broker(
    settings: Settings, tracer_provider: TracerProvider, registry: CollectorRegistry
) -> KafkaBroker:
    security: BaseSecurity | None = kafka_security(settings)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.service_id,
        security=security,
        graceful_timeout=settings.shutdown_grace_seconds,
        # A batch's results leave in a few produce requests: with aiokafka's default of
        # 16 KiB (about 15 messages of 1 KiB) a batch of 1,000 took some 70 (~25 % slower).
        max_batch_size=PRODUCER_BATCH_BYTES,
        # FastStream's own logger writes two lines per message whatever LOG_LEVEL says;
        # through the standard one they are DEBUG lines, and its errors still show.
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
            KafkaPrometheusMiddleware(registry=registry, app_name=settings.otel_service_name),
        ],
    )
    broker.include_router(handlers.create_router(settings))
    return broker


def create_app(
    settings: Settings | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    consul_client: Callable[[Settings], Any] = discovery.consul_client,
) -> FastAPI:
    """Build the app; tests swap the span exporter and the Consul client."""
    settings = settings or Settings()
    tracer_provider = telemetry.create_tracer_provider(settings, span_exporter)
    registry = metrics.create_registry()
    broker = create_broker(settings, tracer_provider, registry)
    readiness = health.Readiness()
    registration = discovery.ConsulRegistration(settings, consul_client)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connecting = asyncio.create_task(connect_broker(broker, readiness))
        if settings.consul_enabled:
            registration.start()
        try:
            yield
        finally:
            # Uvicorn has stopped taking requests. Leave Consul while Kafka stops
            # fetching and finishes (and commits) the work in flight, up to the
            # grace period; then close Kafka and flush the spans.
            await asyncio.gather(
                registration.stop() if settings.consul_enabled else asyncio.sleep(0),
                handlers.drain(broker, settings.shutdown_grace_seconds),
            )
            connecting.cancel()
            with suppress(asyncio.CancelledError):
                await connecting
            await broker.stop()
            tracer_provider.shutdown()

    app = FastAPI(
        title=settings.otel_service_name,
        version=settings.service_version,
        description="Turns value-model requests into value models.",
        lifespan=lifespan,
        max_body_size=settings.max_request_body_bytes,  # larger bodies get 413
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.readiness = readiness
    app.state.registration = registration
    app.state.registry = registry
    app.state.tracer_provider = tracer_provider
    app.include_router(health.create_router(broker, readiness))
    app.include_router(metrics.create_router(registry))
    requests = broker.publisher(
        settings.consumes_topic,
        schema=events.ValueModelRequested,
        description="Emitted by the HTTP API for every accepted request.",
    )
    app.include_router(api.create_router(requests, readiness))
    app.add_middleware(metrics.HttpMetricsMiddleware, registry=registry)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, excluded_urls="/health/.*,/metrics"
    )
    return app


async def connect_broker(
    broker: KafkaBroker, readiness: health.Readiness, max_backoff: float = 5.0
) -> None:
    """Start the broker, retrying with backoff: the app serves while Kafka is down."""
    delay = 0.25
    while True:
        try:
            await broker.start()
        except Exception as error:
            readiness.failed(f"Kafka unreachable: {error!r}")
            logger.warning("Kafka unreachable (%r); retrying in %.1fs", error, delay)
            with suppress(Exception):
                await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
        else:
            readiness.started()
            logger.info("Kafka connected")
            return
