"""Every log line is JSON with the service's name and, inside a span, its trace ids."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from event_chassis import logs
from event_chassis.testing import test_settings

from .example import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("restore_logging")
def test_lines_are_json_with_the_trace_of_the_span_they_are_written_in() -> None:
    stream = io.StringIO()
    logs.configure(test_settings(Settings, log_format="auto"), stream)
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("work") as span:
        logging.getLogger("faststream").warning("inside %s", "a span", extra={"topic": "t"})
    colourful = {"color_message": "Finished server process [\x1b[36m%d\x1b[0m]"}
    logging.getLogger("uvicorn.error").info("outside", extra=colourful)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("example").exception("failed")

    inside, outside, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["event"] == "inside a span"
    assert inside["level"] == "warning"
    assert inside["logger"] == "faststream"
    assert inside["topic"] == "t"
    assert inside["service.name"] == "example"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "timestamp" in inside
    assert "trace_id" not in outside
    assert "\x1b" not in stream.getvalue()
    assert "RuntimeError: boom" in failed["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_no_colour_anywhere_but_a_terminal() -> None:
    file, terminal = io.StringIO(), Terminal()

    logs.configure(test_settings(Settings, log_format="console"), file)
    logging.getLogger("x").warning("to a file")
    logs.configure(test_settings(Settings, log_format="auto"), terminal)
    logging.getLogger("x").warning("to a terminal")

    assert "\x1b[" not in file.getvalue()
    assert "to a file" in file.getvalue()
    assert "\x1b[" in terminal.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_records_also_go_to_the_collector_unless_told_not_to() -> None:
    sent = logs.configure(test_settings(Settings, otel_logs_exporter="otlp"), io.StringIO())
    try:
        assert sent is not None
        assert len(logging.getLogger().handlers) == 2
    finally:
        logs.shutdown(sent)
    assert logs.configure(test_settings(Settings), io.StringIO()) is None
    assert len(logging.getLogger().handlers) == 1


@pytest.mark.usefixtures("restore_logging")
def test_the_otlp_handlers_own_warnings_are_json_lines_too(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Collector unreachable: the bounded queue overflows, and the SDK's "Queue full"
    warning, logged while a record is emitted, makes OpenTelemetry's handler report the
    recursion on its own stderr logger. That line is JSON on our stream, not text."""
    stream = io.StringIO()
    unreachable = "http://127.0.0.1:1"  # refused at once; the exporter backs off
    settings = test_settings(
        Settings, otel_logs_exporter="otlp", otel_exporter_otlp_endpoint=unreachable
    )
    sent = logs.configure(settings, stream)
    try:
        for number in range(3 * logs.MAX_QUEUED_LOGS):
            logging.getLogger("example").info("record %d", number)
    finally:
        logs.shutdown(sent)

    assert capfd.readouterr().err == "", "a plain-text line went to stderr"
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    internal = [r for r in records if r["logger"].endswith("logging.handler.internal")]
    assert internal, "the queue never overflowed"
    assert "recursive logging" in internal[0]["event"]


@pytest.mark.usefixtures("restore_logging")
def test_one_logger_can_say_more_than_the_rest() -> None:
    stream = io.StringIO()
    settings = test_settings(Settings, log_level="WARNING", log_levels="example.handlers=DEBUG")
    logs.configure(settings, stream)
    try:
        logging.getLogger("example.handlers").debug("handled one")
        logging.getLogger("some.library").info("quiet")
    finally:
        logging.getLogger("example.handlers").setLevel(logging.NOTSET)

    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["handled one"]


def test_a_malformed_level_is_refused() -> None:
    with pytest.raises(ValueError, match="logger=LEVEL"):
        test_settings(Settings, log_levels="example.handlers:LOUD")
