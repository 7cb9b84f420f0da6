"""Structured logs: JSON lines on stdout, the same records by OTLP to the collector.

Every logger goes through the standard library's `logging` (the service's own,
the chassis', FastStream's and uvicorn's), and structlog's ProcessorFormatter
renders each record once: time, level, logger, message, the service's name,
`trace_id` and `span_id` when inside a span, any `extra=` fields and the
exception. Colour only on an interactive terminal, never in files.
OpenTelemetry's LoggingHandler sends the same records to the collector, with
their trace context, through a bounded batch queue that never blocks.
"""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
)

from .settings import ServiceSettings
from .tracing import bounded, resource

# The SDK default, which OTEL_BLRP_MAX_QUEUE_SIZE changes (as OTEL_BLRP_* do theirs).
MAX_QUEUED_LOGS = 2048


def add_trace_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the active span's ids, as Jaeger and the log store show them."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def drop_colour(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: uvicorn adds its message with ANSI colours as an extra."""
    event.pop("color_message", None)
    return event


def formatter(settings: ServiceSettings, stream: Any = sys.stdout) -> logging.Formatter:
    """The one formatter every record goes through."""
    readable = settings.log_format == "console" or (
        settings.log_format == "auto" and stream.isatty()
    )
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if readable
        else structlog.processors.JSONRenderer()
    )
    service = settings.otel_service_name

    def add_service(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["service.name"] = service
        return event

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            drop_colour,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_service,
            add_trace_context,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if readable else [structlog.processors.format_exc_info]),
            renderer,
        ],
    )


def create_logger_provider(settings: ServiceSettings) -> LoggerProvider | None:
    """OTLP log export, or None when `OTEL_LOGS_EXPORTER=none`."""
    if settings.otel_sdk_disabled or settings.otel_logs_exporter == "none":
        return None
    exporter: LogRecordExporter = ConsoleLogRecordExporter()
    if settings.otel_logs_exporter == "otlp":
        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/logs"
        exporter = OTLPLogExporter(endpoint=endpoint)
    provider = LoggerProvider(resource=resource(settings))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return provider


def configure(settings: ServiceSettings, stream: Any = sys.stdout) -> LoggerProvider | None:
    """Route every log record of the process through the chassis' handlers.

    Called once by `event_chassis.run`; returns the OTLP provider to shut down.
    """
    console = logging.StreamHandler(stream)
    console.setFormatter(formatter(settings, stream))
    handlers: list[logging.Handler] = [console]
    provider = create_logger_provider(settings)
    if provider is not None:
        handlers.append(LoggingHandler(logger_provider=provider))
    root = logging.getLogger()
    root.handlers = handlers
    root.setLevel(settings.log_level)
    for name, level in settings.logger_levels.items():
        logging.getLogger(name).setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream"):
        logging.getLogger(name).handlers = []  # theirs had colours; ours are above
        logging.getLogger(name).propagate = True
    # OpenTelemetry's handler reports its own trouble (a record logged while it emits one,
    # e.g. the SDK's "Queue full" while the collector is down) on a logger that does not
    # propagate and writes plain text to stderr; it gets our console handler instead.
    logging.getLogger(f"{LoggingHandler.__module__}.internal").handlers = [console]
    return provider


def shutdown(provider: LoggerProvider | None) -> None:
    if provider is not None:
        bounded(provider.shutdown)
