"""What a rendered service reads and serves, told by the service itself.

Run with a Python that has the service's dependencies (the event-chassis) and
the service's `src` on PYTHONPATH, in the environment a pod would give it:

    python service_facts.py <package> <path> [<path> ...]

It prints JSON: the environment variables its Settings class reads, the
settings it parsed from this environment, and for each path the status and
body its app answers (no lifespan runs, so Kafka is never reached: the app
serves as it does before Kafka answers). The chart tests compare the chart's
ports, probes, env names and topics with these, so nothing is retyped.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from fastapi.testclient import TestClient


def facts(package: str, paths: list[str]) -> dict[str, Any]:
    settings_class = importlib.import_module(f"{package}.settings").Settings
    create_service = importlib.import_module(f"{package}.service").create_service
    settings = settings_class()
    env_names = sorted(name.upper() for name in settings_class.model_fields)
    # Telemetry off for the app itself: a probe must not export anything anywhere.
    off = {"otel_sdk_disabled": True, "otel_traces_exporter": "none", "otel_logs_exporter": "none"}
    quiet = settings.model_copy(update=off)
    client = TestClient(create_service(quiet).app)  # no `with`: no lifespan, no Kafka
    answers = {}
    for path in paths:
        response = client.get(path)
        answers[path] = {"status": response.status_code, "body": response.text[:2000]}
    return {
        "env_names": env_names,
        "settings": settings.model_dump(mode="json"),
        "answers": answers,
    }


if __name__ == "__main__":
    print(json.dumps(facts(sys.argv[1], sys.argv[2:])))
