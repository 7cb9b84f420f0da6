"""OpenTelemetry tracing: one provider per app, exported over OTLP/HTTP.

Spans leave through a BatchSpanProcessor: export runs on a background thread
and its queue is bounded, so a slow or absent collector costs neither latency
nor unbounded memory.
"""

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from .config import Settings


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
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=2048))
    return provider


def current_trace_id() -> str:
    """The trace id of the active span as 32 hex digits, or "" outside a trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
