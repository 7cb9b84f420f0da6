"""Helpers for the telemetry tests: spans' events in Jaeger, records in the log store.

A log record in VictoriaLogs (from the collector's OTLP export) is a JSON
object: `_msg` is the message, `service.name` comes from the service's
resource, `trace_id` and `span_id` from the span it was logged in, and the
record's `extra=` fields are attributes (`error_type`, `attempts`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from platform_native.servers import VictoriaLogs

T = TypeVar("T")
ANSI = re.compile(r"\x1b\[")


def logs_of_trace(store: VictoriaLogs, trace_id: str) -> list[dict[str, Any]]:
    """Every record the log store holds for one trace (the LogsQL a person types)."""
    return store.query(f'trace_id:"{trace_id}"')


def services_of(records: list[dict[str, Any]]) -> set[str]:
    return {record["service.name"] for record in records}


def span_events(trace: dict[str, Any], service: str, operation: str) -> list[dict[str, Any]]:
    """The events (Jaeger: "logs") of the span `operation` of `service`, as dicts."""
    service_of = {key: value["serviceName"] for key, value in trace["processes"].items()}
    return [
        {field["key"]: field["value"] for field in log["fields"]}
        for span in trace["spans"]
        if (service_of[span["processID"]], span["operationName"]) == (service, operation)
        for log in span.get("logs", [])
    ]


def span_ids(trace: dict[str, Any]) -> set[str]:
    return {span["spanID"] for span in trace["spans"]}


def json_line_problems(path: Path) -> list[str]:
    """Lines of a log file that carry an ANSI escape or are not one JSON object each."""
    problems = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if ANSI.search(line):
            problems.append(f"{path.name}:{number}: ANSI escape: {line[:200]!r}")
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(f"{path.name}:{number}: not JSON: {line[:200]!r}")
            continue
        if not isinstance(record, dict) or not {"timestamp", "level", "event"} <= set(record):
            problems.append(f"{path.name}:{number}: not a log record: {line[:200]!r}")
    return problems
