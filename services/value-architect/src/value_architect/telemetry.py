"""OpenTelemetry tracing: one provider per app, exported over OTLP/HTTP.

Spans leave through a BatchSpanProcessor: export runs on a background thread
and its queue is bounded, so a slow or absent collector costs neither latency
nor unbounded memory (spans over the bound are dropped, not kept).

Shut-down is bounded too. The SDK's own shut-down flushes batch after batch,
each retried for up to the exporter's timeout, and gives up only after 30 s:
with the collector down, a SIGTERMed service would outlive an orchestrator's
grace period and be killed. Here the final flush gets `SPAN_FLUSH_SECONDS`.
"""

import threading

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from .config import Settings

MAX_QUEUED_SPANS = 2048
SPAN_FLUSH_SECONDS = 5.0  # a live collector takes milliseconds; a dead one is not waited for


class BoundedBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor whose shut-down returns within `flush_seconds`."""

    def __init__(
        self, exporter: SpanExporter, *, flush_seconds: float = SPAN_FLUSH_SECONDS
    ) -> None:
        super().__init__(exporter, max_queue_size=MAX_QUEUED_SPANS)
        self.flush_seconds = flush_seconds

    def shutdown(self) -> None:
        # The SDK's shut-down runs on a daemon thread: if the collector does not
        # answer in time, the remaining spans are given up with the process.
        flushing = threading.Thread(target=super().shutdown, name="span-flush", daemon=True)
        flushing.start()
        flushing.join(self.flush_seconds)


def create_tracer_provider(
    settings: Settings, exporter: SpanExporter | None = None
) -> TracerProvider:
    """Build the provider; tests pass an in-memory exporter instead of OTLP."""
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.version": settings.service_version,
            "service.instance.id": settings.service_instance_id,
        }
    )
    provider = TracerProvider(resource=resource)
    if settings.otel_sdk_disabled:
        return provider
    if exporter is None:
        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider.add_span_processor(BoundedBatchSpanProcessor(exporter))
    return provider


def current_trace_id() -> str:
    """The trace id of the active span as 32 hex digits, or "" outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
