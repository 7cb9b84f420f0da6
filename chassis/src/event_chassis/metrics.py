"""Prometheus metrics: one registry per service, served at `/metrics`.

The messaging metrics are the chassis' own rather than FastStream's
`KafkaPrometheusMiddleware`: that middleware runs once per published message
(measured: the biggest per-message cost after tracing) and knows nothing of
retries, dead letters or consumer lag, the signals an event-driven service is
alerted on. Here the counters move once per batch. The HTTP middleware below
labels requests by route template (`/api/v1/items/{id}`), never by raw path,
which would explode the number of series.
"""

import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BATCH_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class MessagingMetrics:
    """What every service exports about its Kafka work (names documented in the README)."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry())

    def __post_init__(self) -> None:
        registry = self.registry
        self.consumed = Counter(
            "messaging_consumed_messages",
            "Messages taken from Kafka.",
            ["topic", "group"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "messaging_dead_lettered_messages",
            "Messages sent to the dead-letter topic, by reason (the error type).",
            ["topic", "group", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "messaging_retries",
            "Handler attempts that failed and were retried, by error type.",
            ["topic", "group", "reason"],
            registry=registry,
        )
        self.batches_read_again = Counter(
            "messaging_batches_read_again",
            "Batches that did not finish (a parser, middleware or publish failed) and were "
            "sought back to be read again.",
            ["topic", "group"],
            registry=registry,
        )
        self.held_partitions = Gauge(
            "messaging_held_partitions",
            "Partitions paused because a dependency or the dead-letter topic is unavailable.",
            ["topic", "group"],
            registry=registry,
        )
        self.dead_letter_failures = Counter(
            "messaging_dead_letter_failures",
            "Dead-letter publishes that failed (the record's partition is held), by error type.",
            ["topic", "group", "reason"],
            registry=registry,
        )
        self.dead_letters_truncated = Counter(
            "messaging_dead_letters_truncated",
            "Records too large to dead-letter whole: a truncated copy went instead.",
            ["topic", "group"],
            registry=registry,
        )
        self.sent = Counter(
            "messaging_sent_messages",
            "Messages published to Kafka.",
            ["topic"],
            registry=registry,
        )
        self.batch_duration = Histogram(
            "messaging_batch_duration_seconds",
            "Time to handle a batch, publish its results and commit it.",
            ["topic", "group"],
            buckets=BATCH_SECONDS,
            registry=registry,
        )
        self.lag = Gauge(
            "messaging_consumer_lag",
            "Messages in a partition not yet committed by this group (high-water mark "
            "minus committed offset), as of this consumer's last batch.",
            ["topic", "partition", "group"],
            registry=registry,
        )
        self.kafka_connected = Gauge(
            "messaging_kafka_connected",
            "1 while the service reaches Kafka, else 0.",
            registry=registry,
        )


def create_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


class HttpMetricsMiddleware:
    """Counts requests and observes their latency, by method, route and status."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "http_requests",
            "HTTP requests handled.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            # The router records the matched route in the scope.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
