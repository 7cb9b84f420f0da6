"""Reading traces back from Jaeger's query API, as a user would in its UI."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def trace(query_url: str, trace_id: str) -> dict[str, Any] | None:
    try:
        [found] = get_json(f"{query_url}/api/traces/{trace_id}")["data"]
    except (OSError, ValueError):
        return None
    return dict(found)


def operations(trace: dict[str, Any]) -> set[tuple[str, str]]:
    """(service, operation) of every span in `trace`."""
    service_of = {key: value["serviceName"] for key, value in trace["processes"].items()}
    return {(service_of[span["processID"]], span["operationName"]) for span in trace["spans"]}


def linked_trace(
    query_url: str, service: str, operation: str, from_trace_id: str
) -> dict[str, Any] | None:
    """The trace in which `service` ran a batch span `operation` linked to `from_trace_id`.

    A batch consumer's span starts a trace of its own, with a link (a Jaeger
    reference) to the producer span of each message in the batch.
    """
    query = urllib.parse.urlencode(
        {"service": service, "operation": operation, "limit": 100, "lookback": "1h"}
    )
    try:
        found = get_json(f"{query_url}/api/traces?{query}")["data"] or []
    except (OSError, ValueError):
        return None
    wanted = int(from_trace_id, 16)  # Jaeger drops leading zeros: compare numbers
    for candidate in found:
        if int(candidate["traceID"], 16) == wanted:
            continue  # its own spans refer to it too
        for span in candidate["spans"]:
            refs = [ref for ref in span["references"] if int(ref["traceID"], 16) == wanted]
            if span["operationName"] == operation and refs:
                return dict(candidate)
    return None
