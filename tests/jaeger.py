"""Reading traces back from Jaeger's query API, as a user would in its UI."""

from __future__ import annotations

import json
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


def parents(trace: dict[str, Any]) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """For each (service, operation) in `trace`, the (service, operation)s of its parents."""
    service_of = {key: value["serviceName"] for key, value in trace["processes"].items()}
    by_id = {span["spanID"]: span for span in trace["spans"]}
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for span in trace["spans"]:
        name = (service_of[span["processID"]], span["operationName"])
        for ref in span["references"]:
            parent = by_id.get(ref["spanID"]) if ref["refType"] == "CHILD_OF" else None
            if parent is not None:
                found.setdefault(name, set()).add(
                    (service_of[parent["processID"]], parent["operationName"])
                )
    return found
