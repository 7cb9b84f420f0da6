"""Helpers for a service's own tests: no Kafka, Consul or collector needed.

    async with TestService(create_service(test_settings(Settings))) as service:
        await service.send(settings.consumes_topic, {"name": "Acme"})
        [result] = service.published(settings.produces_topic)

`TestService` runs the service's broker on FastStream's in-memory
`TestKafkaBroker`, records what it publishes (results, dead letters and the
service's own publishers), keeps its spans in memory and gives an HTTP client
for its routes. What the in-memory broker lacks is stood in for here, never in
the chassis' own modules: results go through FastStream's publishers (it knows no
aiokafka producer), and a batch's offsets are not committed (it has no consumer).
"""

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage as Message
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from .partitions import Partitions
from .results import Headers
from .service import Service
from .settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
UNPUBLISHED = """SELECT position, id, aggregatetype, aggregateid, payload::text AS payload
FROM event_outbox WHERE published_at IS NULL ORDER BY position"""
MARK = "UPDATE event_outbox SET published_at = now() WHERE position = ANY(:positions)"


class PublisherOutbox:
    """Results through FastStream's publishers, which the in-memory broker carries."""

    def __init__(self, publishers: Mapping[str, Any]) -> None:
        self.publishers = publishers
        self.count = 0

    async def add(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        text = {name: content.decode() for name, content in headers}
        await self.publishers[topic].publish(value, key=key, headers=text)
        self.count += 1

    async def delivered(self) -> int:
        return self.count


class UncommittedPartitions(Partitions):
    """The in-memory broker has no consumer to commit to or seek: a batch just ends."""

    async def finish(self, *args: Any) -> None:
        self.in_hand.clear()


async def _nothing_to_start() -> None:
    """The results' producer is not needed: FastStream's publishers carry the results."""


@dataclass(frozen=True)
class Published:
    """One message the service published: what a consumer downstream would receive."""

    key: bytes | None
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def test_settings(settings_class: type[S], **overrides: Any) -> S:
    """`settings_class` for tests: no Consul, no exporters, every span kept, quick retries."""
    defaults: dict[str, Any] = {
        "consul_enabled": False,
        "otel_traces_exporter": "none",
        "otel_logs_exporter": "none",
        "otel_traces_sampler": "always_on",
        "handler_retry_backoff_seconds": 0.01,
        "service_instance_id": "test",
    }
    return settings_class(_env_file=None, **{**defaults, **overrides})


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


class TestService:
    """A service on in-memory Kafka, with what it publishes recorded by topic."""

    __test__ = False  # not a test class for pytest

    def __init__(self, service: Service) -> None:
        self.service = service
        results = service.results
        results.start = _nothing_to_start  # type: ignore[method-assign]
        results.outbox = lambda: PublisherOutbox(results.publishers)  # type: ignore[method-assign]
        for consumer in service.batch_consumers:
            old = consumer.partitions
            consumer.partitions = UncommittedPartitions(
                old.name,
                hold_seconds=old.hold_seconds,
                max_hold_seconds=old.max_hold_seconds,
                failed=old.failed,
                held=old.held_gauge,
            )
        self.spans = InMemorySpanExporter()
        service.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self._published: dict[str, list[Published]] = defaultdict(list)
        for topic in service.published_topics:
            service.broker.subscriber(topic, group_id=f"test-recorder-{topic}")(
                self._recorder(self._published[topic])
            )
        self._broker = TestKafkaBroker(service.broker)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service.app), base_url="http://test"
        )

    @staticmethod
    def _recorder(messages: list[Published]) -> Any:
        async def record(message: Message) -> None:
            raw: Any = message.raw_message  # the in-memory broker's ConsumerRecord
            messages.append(Published(raw.key, message.body, message.headers))

        return record

    async def __aenter__(self) -> Self:
        if self.service.database is not None:  # what the service's start-up does
            await self.service.database.upgrade(self.service.migrations)
        await self._broker.__aenter__()
        self.service.readiness.problems.clear()  # connected, every consumer in its group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.client.aclose()
        await self._broker.__aexit__(exc_type, exc, traceback)
        if self.service.database is not None:
            await self.service.database.close()

    async def send(
        self,
        topic: str,
        event: BaseModel | Mapping[str, Any] | bytes,
        *,
        key: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish to `topic` as a producer would; the service handles it before this returns.

        Each message gets its own `message-id` header (as the outbox relay's records do),
        which the inbox of a service with a database goes by.
        """
        body = (
            event.model_dump_json().encode()
            if isinstance(event, BaseModel)
            else event
            if isinstance(event, bytes)
            else json.dumps(event).encode()
        )
        headers = {"message-id": str(uuid.uuid4()), **(headers or {})}
        await self.service.broker.publish(body, topic, key=key, headers=headers)

    async def publish_outbox(self) -> int:
        """Publish what the service's outbox holds, as its relay would; how many messages.

        The service handles what it consumes of them before this returns, so its own
        results are in the outbox again: call it until it returns 0 to follow a flow.
        """
        from sqlalchemy import text  # the postgres extra: only services with a database

        database = self.service.database
        if database is None:
            raise RuntimeError("the service has no database (service.use_database())")
        async with database.transaction() as session:
            rows = (await session.execute(text(UNPUBLISHED))).all()
            await session.execute(text(MARK), {"positions": [row.position for row in rows]})
        for row in rows:
            key = row.aggregateid.encode() if row.aggregateid is not None else None
            headers = {"message-id": str(row.id), "content-type": "application/json"}
            await self.service.broker.publish(
                row.payload.encode(), row.aggregatetype, key=key, headers=headers
            )
        return len(rows)

    def published(self, topic: str) -> list[Published]:
        """What the service published to `topic` so far, oldest first."""
        return self._published[topic]
