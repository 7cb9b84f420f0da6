"""The hand-written OTLP encoding says exactly what the SDK's protobuf encoder says."""

import gc
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from event_chassis.otlp import WireSpanExporter, encode
from event_chassis.tracing import extract, messaging_attributes

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def finished_spans() -> tuple[ReadableSpan, ...]:
    """Spans with every kind of field: remote parents, trace state, all value types,
    events, links, errors, two resources and two scopes."""
    spans = InMemorySpanExporter()
    for service in ("one", "two"):
        resource = Resource.create({"service.name": service, "service.instance.id": "i-1"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(spans))
        tracer = provider.get_tracer("event_chassis", "1.4.0", schema_url="https://x/1.26")
        headers = [("traceparent", TRACEPARENT), ("tracestate", b"vendor=a,other=b")]
        for offset in range(40):
            span = tracer.start_span(
                "process requests", context=extract(headers), kind=SpanKind.CONSUMER
            )
            span.set_attributes(
                {
                    **messaging_attributes("process", "requests", {"group": "g"}),
                    "messaging.destination.partition.id": str(offset % 3),
                    "messaging.kafka.offset": offset,
                    "negative": -offset - 2**40,
                    "ratio": offset / 7,
                    "flag": offset % 2 == 0,
                    "names": ["a", "ü"],
                    "sizes": [1, 2**63 - 1],
                    "key": f"key-{offset}" * (offset % 9),  # lengths over 127 bytes too
                }
            )
            span.end()
        other = provider.get_tracer("value_architect")
        with other.start_as_current_span("root", kind=SpanKind.SERVER) as root:
            root.add_event("put_back", {"attempt": 2, "error.type": "Timeout"})
            root.set_status(Status(StatusCode.ERROR, "boom"))
            link = Link(root.get_span_context(), {"why": "batch"})
            with other.start_as_current_span("child", links=[link]) as child:
                child.set_status(Status(StatusCode.OK))
    return spans.get_finished_spans()


def test_the_bytes_parse_to_what_the_sdk_encodes() -> None:
    spans = finished_spans()
    ours = ExportTraceServiceRequest.FromString(encode(spans))
    assert ours == encode_spans(spans)
    assert encode(spans) == encode_spans(spans).SerializeToString()  # the same order too


def test_a_value_the_sdk_cannot_encode_is_refused() -> None:
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        pass
    span._attributes = {"odd": object()}  # type: ignore[attr-defined]  # past the SDK's checks
    with pytest.raises(TypeError, match="Invalid type"):
        encode([span])  # type: ignore[list-item]


class Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces"
    server.shutdown()


def test_the_exporter_posts_the_encoded_request(collector: str) -> None:
    spans = finished_spans()
    exporter = WireSpanExporter(endpoint=collector)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert ExportTraceServiceRequest.FromString(Collector.bodies[-1]) == encode_spans(spans)
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert exporter.export(spans) == SpanExportResult.FAILURE


def test_a_failed_export_leaves_no_garbage_cycle_behind() -> None:
    """With the collector away, each failed attempt's exception, traceback and frames hold
    the batch in a cycle; left to the tuned collector, memory grew while it was away."""
    with socket.socket() as probe:  # a port nobody listens on: every attempt is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = WireSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1)
    gc.collect()
    gc.disable()  # only the exporter may collect meanwhile
    try:
        assert exporter.export(finished_spans()) == SpanExportResult.FAILURE
        gc.set_debug(gc.DEBUG_SAVEALL)  # what is still in cycles goes to gc.garbage
        gc.collect()
        # This exporter's errors only: they name its port. Another test's exporter, still
        # exporting in the background, may fail meanwhile (seen once under make test's load).
        errors = [
            type(item).__name__
            for item in gc.garbage
            if isinstance(item, BaseException) and f"port={port}" in str(item)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert errors == [], "a failed export's errors were left in cycles"
