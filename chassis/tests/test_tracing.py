"""One trace per request: every message's span is the child of its producer's span."""

import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBasedTraceIdRatio
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    get_current_span,
    set_span_in_context,
)

from event_chassis.testing import TestService, test_settings
from event_chassis.tracing import (
    MAX_QUEUED_SPANS,
    BoundedBatchSpanProcessor,
    create_tracer_provider,
    extract,
    inject,
    kafka_headers,
)

from . import example
from .example import Requested, Settings


def by_name(service: TestService) -> dict[str, list[ReadableSpan]]:
    spans: dict[str, list[ReadableSpan]] = {}
    for span in service.spans.get_finished_spans():
        spans.setdefault(f"{span.name} {span.kind.name}", []).append(span)
    return spans


async def test_a_request_is_one_trace_from_http_through_the_consumer(
    service: TestService, settings: Settings
) -> None:
    response = await service.client.post("/api/v1/requests", json={"name": "acme"})
    assert response.status_code == 202

    spans = by_name(service)
    [server] = spans["POST /api/v1/requests SERVER"]
    assert not [name for name in spans if "http receive" in name or "http send" in name]
    [send] = spans[f"send {settings.consumes_topic} PRODUCER"]
    [process] = spans[f"process {settings.consumes_topic} CONSUMER"]
    assert send.parent is not None
    assert send.parent.span_id == server.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == server.context.trace_id
    # The result carries the process span's context on to the next service.
    [result] = service.published(settings.produces_topic)
    trace_id, span_id = result.headers["traceparent"].split("-")[1:3]
    assert int(trace_id, 16) == server.context.trace_id
    assert int(span_id, 16) == process.context.span_id


async def test_the_process_span_follows_the_messaging_conventions(
    service: TestService, settings: Settings
) -> None:
    await service.send(settings.consumes_topic, Requested(name="acme"), key=b"acme")

    [process] = by_name(service)[f"process {settings.consumes_topic} CONSUMER"]
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == settings.consumes_topic
    assert attributes["messaging.consumer.group.name"] == settings.consumer_group
    assert attributes["messaging.kafka.message.key"] == "acme"
    assert str(attributes["messaging.destination.partition.id"]).isdigit()
    assert isinstance(attributes["messaging.kafka.offset"], int)


async def test_retries_and_the_dead_letter_are_events_on_the_message_span(
    service: TestService, settings: Settings
) -> None:
    example.behaviour.failures = [RuntimeError("broken")] * 10

    await service.send(settings.consumes_topic, Requested(name="acme"))

    [process] = by_name(service)[f"process {settings.consumes_topic} CONSUMER"]
    events = [(event.name, dict(event.attributes or {})) for event in process.events]
    retries = [attributes for name, attributes in events if name == "retry"]
    assert [retry["attempt"] for retry in retries] == [1, 2, 3]
    assert all(retry["error.type"] == "RuntimeError" for retry in retries)
    assert events[-1] == ("dead_lettered", {"error.type": "RuntimeError", "attempts": 4})
    assert process.status.status_code is StatusCode.ERROR
    assert process.kind is SpanKind.CONSUMER


def test_by_default_one_request_in_a_hundred_is_sampled_where_it_starts() -> None:
    provider = create_tracer_provider(Settings(_env_file=None, otel_traces_exporter="none"))

    assert isinstance(provider.sampler, ParentBasedTraceIdRatio)
    assert "TraceIdRatioBased{0.01}" in provider.sampler.get_description()  # type: ignore[no-untyped-call]


def test_the_standard_sampler_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")

    provider = create_tracer_provider(Settings(_env_file=None, otel_traces_exporter="none"))

    assert provider.sampler.get_description() == "TraceIdRatioBased{0.25}"


def test_unsampled_requests_cost_no_recorded_span() -> None:
    provider = create_tracer_provider(
        test_settings(
            Settings, otel_traces_sampler="parentbased_traceidratio", otel_traces_sampler_arg=0
        )
    )
    with provider.get_tracer("test").start_as_current_span("root") as span:
        assert not span.is_recording()


def test_the_resource_names_the_service_and_instance(settings: Settings) -> None:
    attributes = create_tracer_provider(settings).resource.attributes

    assert attributes["service.name"] == "example"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["service.instance.id"] == "test"


class HungCollector(SpanExporter):
    """An exporter that blocks like a collector that accepts and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.FAILURE


def spans_while_collector_hangs(collector: HungCollector) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BoundedBatchSpanProcessor(collector))
    tracer = provider.get_tracer(__name__)
    for i in range(4 * MAX_QUEUED_SPANS):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    return provider


def test_spans_queued_for_a_hung_collector_are_bounded() -> None:
    collector = HungCollector()
    provider = spans_while_collector_hangs(collector)
    collector.release.set()
    provider.force_flush()

    # One batch was in the hung export; the queue held at most its bound; the rest dropped.
    assert 0 < collector.exported <= MAX_QUEUED_SPANS + 512
    provider.shutdown()


def test_the_standard_batch_span_processor_variables_are_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_BSP_MAX_QUEUE_SIZE bounds the queue (the chassis once fixed it at 2048)."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50")
    collector = HungCollector()
    provider = spans_while_collector_hangs(collector)
    collector.release.set()
    provider.force_flush()

    assert 0 < collector.exported <= 100 + 50
    provider.shutdown()


def test_shutdown_does_not_wait_for_a_hung_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("event_chassis.tracing.FLUSH_SECONDS", 0.5)
    collector = HungCollector()
    provider = spans_while_collector_hangs(collector)

    started = time.monotonic()
    provider.shutdown()  # the SDK alone would wait 30 s here
    took = time.monotonic() - started
    collector.release.set()

    assert took < 10.0  # the flush is given 0.5 s; the SDK alone would take 30


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("trace_state", ["", "vendor=value"])
def test_result_headers_carry_the_context_exactly_as_opentelemetry_injects_it(
    sampled: bool, trace_state: str
) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF).get_tracer("test")
    parent = NonRecordingSpan(
        SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
            trace_state=TraceState.from_header([trace_state]) if trace_state else None,
        )
    )
    with tracer.start_as_current_span("process", context=set_span_in_context(parent)) as span:
        injected = inject({"content-type": "application/json"})
        written = kafka_headers(span, "application/json")

    assert dict(written) == {name: value.encode() for name, value in injected.items()}
    assert ("tracestate" in injected) == bool(trace_state)


def test_baggage_and_other_propagators_go_through_opentelemetry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("process") as span:
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            assert dict(kafka_headers(span, "application/json"))["baggage"] == b"tenant=acme"
        finally:
            context.detach(token)
        monkeypatch.setattr("event_chassis.tracing.W3C_PROPAGATION", False)
        monkeypatch.setattr(propagate, "inject", lambda carrier, **_: carrier.update(custom="1"))
        assert dict(kafka_headers(span, "application/json"))["custom"] == b"1"


TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-01")],
        [("content-type", "application/json"), ("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-00")],
        [("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-01"), ("tracestate", "vendor=value")],
        [("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-01"), ("baggage", "tenant=acme")],
        [("traceparent", f"00-{TRACE_ID.upper()}-{SPAN_ID}-01")],
        [("traceparent", f"00-{'0' * 32}-{SPAN_ID}-01")],
        [("traceparent", f"00-{TRACE_ID}-{'0' * 16}-01")],
        [("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-01-extra")],
        [("traceparent", f"01-{TRACE_ID}-{SPAN_ID}-01-extra")],
        [("traceparent", f"ff-{TRACE_ID}-{SPAN_ID}-01")],
        [("traceparent", f" 00-{TRACE_ID}-{SPAN_ID}-01 ")],
        [("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-01"), ("traceparent", "00-1-2-01")],
        [("traceparent", "")],
        [("content-type", "application/json")],
    ],
)
def test_a_record_context_is_read_exactly_as_opentelemetry_extracts_it(
    headers: list[tuple[str, str]],
) -> None:
    record_headers = [(name, value.encode()) for name, value in headers]
    carrier = dict(headers)  # what the propagators see (the last of a repeated header)
    expected = propagate.extract(carrier)
    read = extract(record_headers) or Context()

    def ids(found: Context) -> SpanContext:
        return get_current_span(found).get_span_context()

    assert ids(read) == ids(expected)
    assert ids(read).trace_state == ids(expected).trace_state
    assert ids(read).is_remote == ids(expected).is_remote
    assert baggage.get_all(read) == baggage.get_all(expected)


def test_a_plain_traceparent_is_read_without_the_propagators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(propagate, "extract", lambda *_, **__: pytest.fail("propagators"))
    read = extract([("traceparent", f"00-{TRACE_ID}-{SPAN_ID}-01".encode())])
    assert read is not None
    assert format(get_current_span(read).get_span_context().trace_id, "032x") == TRACE_ID
