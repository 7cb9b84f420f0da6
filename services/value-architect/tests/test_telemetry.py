"""Tracing across the Kafka hop: a batch's span links to the span of each message in it."""

import threading
import time
from collections.abc import Sequence

import httpx
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from value_architect.config import Settings
from value_architect.telemetry import (
    MAX_QUEUED_SPANS,
    BoundedBatchSpanProcessor,
    create_tracer_provider,
)


def finished_spans(app: FastAPI, spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """Finished spans by name and kind, "<name> <KIND>" (each occurs once in these tests)."""
    app.state.tracer_provider.force_flush()
    return {f"{span.name} {span.kind.name}": span for span in spans.get_finished_spans()}


def linked(span: ReadableSpan) -> set[int]:
    return {link.context.span_id for link in span.links}


async def test_batch_span_links_to_each_producer_span_and_parents_the_results(
    app: FastAPI, broker: KafkaBroker, settings: Settings, spans: InMemorySpanExporter
) -> None:
    """OpenTelemetry's messaging convention for batches: one span, a link per message."""
    await broker.publish({"company_name": "Acme", "industry": "Retail"}, settings.consumes_topic)

    by_name = finished_spans(app, spans)
    produced = by_name[f"{settings.consumes_topic} create PRODUCER"]
    batch = by_name[f"{settings.consumes_topic} create CONSUMER"]
    process = by_name[f"{settings.consumes_topic} process CONSUMER"]
    assert linked(batch) == {produced.context.span_id}
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 1
    assert process.parent is not None
    assert process.parent.span_id == batch.context.span_id
    result = by_name[f"{settings.produces_topic} create PRODUCER"]
    assert result.parent is not None
    assert result.parent.span_id == process.context.span_id


class HungCollector(SpanExporter):
    """An exporter that blocks like a collector that accepts and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.FAILURE


def spans_while_collector_hangs(collector: HungCollector, flush_seconds: float) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BoundedBatchSpanProcessor(collector, flush_seconds=flush_seconds))
    tracer = provider.get_tracer(__name__)
    for i in range(4 * MAX_QUEUED_SPANS):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    return provider


def test_spans_queued_for_a_hung_collector_are_bounded() -> None:
    collector = HungCollector()
    provider = spans_while_collector_hangs(collector, flush_seconds=5.0)
    collector.release.set()
    provider.force_flush()

    # One batch was in the hung export; the queue held at most its bound; the rest dropped.
    assert 0 < collector.exported <= MAX_QUEUED_SPANS + 512
    provider.shutdown()


def test_shutdown_does_not_wait_for_a_hung_collector() -> None:
    collector = HungCollector()
    provider = spans_while_collector_hangs(collector, flush_seconds=0.5)

    started = time.monotonic()
    provider.shutdown()  # the SDK alone would wait 30 s here
    took = time.monotonic() - started
    collector.release.set()

    assert took < 2.0


def test_the_service_uses_the_bounded_processor(settings: Settings) -> None:
    provider = create_tracer_provider(settings, InMemorySpanExporter())
    processors = provider._active_span_processor._span_processors
    assert [type(p) for p in processors] == [BoundedBatchSpanProcessor]
    provider.shutdown()


def test_resource_names_the_service_and_instance(app: FastAPI, settings: Settings) -> None:
    attributes = app.state.tracer_provider.resource.attributes

    assert attributes["service.name"] == settings.otel_service_name
    assert attributes["service.version"] == settings.service_version
    assert attributes["service.instance.id"] == settings.service_instance_id


async def test_http_request_is_traced_to_the_batch_that_handles_it(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, spans: InMemorySpanExporter
) -> None:
    response = await client.post(
        "/api/v1/value-models",
        json={"company_name": "Acme", "industry": "Retail"},
    )

    trace_id = int(response.json()["trace_id"], 16)
    by_name = finished_spans(app, spans)
    server = by_name["POST /api/v1/value-models SERVER"]
    create = by_name[f"{settings.consumes_topic} create PRODUCER"]
    batch = by_name[f"{settings.consumes_topic} create CONSUMER"]
    assert server.parent is None
    assert server.context.trace_id == trace_id
    assert create.parent is not None
    assert create.parent.span_id == server.context.span_id
    assert create.context.trace_id == trace_id
    assert linked(batch) == {create.context.span_id}
