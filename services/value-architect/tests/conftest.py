"""Fixtures: the app wired to in-memory Kafka, in-memory spans and a fake Consul."""

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka import KafkaMessage as InjectedMessage
from faststream.kafka.message import KafkaMessage
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from value_architect.app import create_app
from value_architect.config import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,
        consul_enabled=False,
        handler_retry_backoff_seconds=0.01,
        service_instance_id="test",
    )


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app(settings: Settings, spans: InMemorySpanExporter) -> FastAPI:
    return create_app(settings, span_exporter=spans)


Recorded = dict[str, list[KafkaMessage]]


@pytest.fixture
def recorded() -> Recorded:
    """Messages published to the produced and dead-letter topics, by topic."""
    return defaultdict(list)


def recorder(messages: list[KafkaMessage]) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def record(message: InjectedMessage) -> None:
        messages.append(message)

    return record


@pytest.fixture
async def broker(
    app: FastAPI, settings: Settings, recorded: Recorded
) -> AsyncIterator[KafkaBroker]:
    """The app's own broker, patched to deliver in memory."""
    for topic in (settings.produces_topic, settings.dead_letter_topic):
        app.state.broker.subscriber(topic, group_id=f"recorder-{topic}")(recorder(recorded[topic]))
    async with TestKafkaBroker(app.state.broker) as test_broker:
        app.state.readiness.started()
        yield test_broker


@pytest.fixture
async def client(app: FastAPI, broker: KafkaBroker) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
