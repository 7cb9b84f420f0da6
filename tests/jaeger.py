"""Reading traces back from Jaeger's query API, as a user would in its UI."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def trace(
    query_url: str, trace_id: str, wanted: Iterable[tuple[str, str]] = ()
) -> dict[str, Any] | None:
    """The trace `trace_id`, once every (service, operation) in `wanted` is in it.

    Spans reach Jaeger in export batches, and a parent span ends (and is
    exported) after its children, so a trace can be found while still partial.
    """
    try:
        [found] = get_json(f"{query_url}/api/traces/{trace_id}")["data"]
    except (OSError, ValueError):
        return None
    return dict(found) if set(wanted) <= operations(found) else None


def operations(trace: dict[str, Any] | None) -> set[tuple[str, str]]:
    """(service, operation) of every span in `trace` (none if there is no trace)."""
    if not trace:
        return set()
    service_of = {key: value["serviceName"] for key, value in trace["processes"].items()}
    return {(service_of[span["processID"]], span["operationName"]) for span in trace["spans"]}


def linked_trace(
    query_url: str,
    service: str,
    operation: str,
    from_trace_id: str,
    wanted: Iterable[tuple[str, str]] = (),
) -> dict[str, Any] | None:
    """The trace in which `service` ran a batch span `operation` linked to `from_trace_id`.

    A batch consumer's span starts a trace of its own, with a link (a Jaeger
    reference) to the producer span of each message in the batch. Like
    `trace`, it is returned only once every operation in `wanted` is in it.
    """
    query = urllib.parse.urlencode(
        {"service": service, "operation": operation, "limit": 100, "lookback": "1h"}
    )
    try:
        found = get_json(f"{query_url}/api/traces?{query}")["data"] or []
    except (OSError, ValueError):
        return None
    origin = int(from_trace_id, 16)  # Jaeger drops leading zeros: compare numbers
    for candidate in found:
        if int(candidate["traceID"], 16) == origin:
            continue  # its own spans refer to it too
        for span in candidate["spans"]:
            refs = [ref for ref in span["references"] if int(ref["traceID"], 16) == origin]
            if span["operationName"] == operation and refs:
                return dict(candidate) if set(wanted) <= operations(candidate) else None
    return None
