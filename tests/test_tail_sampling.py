"""The collector's tail sampling (infrastructure/otel-collector/tail-sampling.yaml).

The layer validates over config.yaml with the collector built from builder.yaml,
a typo in it is refused, and a real collector in front of a real Jaeger keeps what
it promises: every trace with an error, every slow trace, and about a tenth of
the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_native import servers
from platform_native.servers import otel_collector
from platform_native.servers.jaeger import config_args

from .conftest import REPO
from .jaeger import get_json

pytestmark = pytest.mark.infra

COLLECTOR = REPO / "infrastructure" / "otel-collector"
CONFIG, TAIL = COLLECTOR / "config.yaml", COLLECTOR / "tail-sampling.yaml"
SERVICE = "tail-sampling-test"
ORDINARY = 200


def validate(*configs: Path) -> subprocess.CompletedProcess[str]:
    command = [str(otel_collector.build_otelcol()), "validate", *config_args(*configs)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_tail_sampling_layer_validates_over_the_shipped_config() -> None:
    result = validate(CONFIG, TAIL)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_typo_in_the_tail_sampling_layer_is_refused(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(TAIL.read_text().replace("threshold_ms:", "threshold_msec:"))
    result = validate(CONFIG, typo)
    assert result.returncode != 0 and "threshold_msec" in result.stderr


class TailSampling(servers.OtelCollector):
    """The platform's collector with tail-sampling.yaml layered in, deciding after 1 s."""

    def command(self) -> list[str]:
        quick = self.workdir / "quick.json"
        quick.write_text(json.dumps({"processors": {"tail_sampling": {"decision_wait": "1s"}}}))
        paths = (self.config, TAIL, self.overlay_path, quick)
        return [str(self.binary), *config_args(*paths)]


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("tail-sampling")
    jaeger = servers.Jaeger(root / "jaeger")
    logs = servers.VictoriaLogs(root / "victorialogs")
    collector = TailSampling(root / "otelcol", jaeger=jaeger, logs_endpoint=logs.otlp_endpoint)
    with servers.running(jaeger, logs, collector):
        yield collector.otlp_http, jaeger.query_url


def span(trace_id: str, *, millis: int, error: bool) -> dict[str, object]:
    now = time.time_ns()
    return {
        "traceId": trace_id,
        "spanId": os.urandom(8).hex(),
        "name": "handle",
        "kind": 2,
        "startTimeUnixNano": str(now - millis * 1_000_000),
        "endTimeUnixNano": str(now),
        "status": {"code": 2 if error else 1},
    }


def send(otlp_http: str, spans: list[dict[str, object]]) -> None:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    request = urllib.request.Request(
        f"{otlp_http}/v1/traces",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_errors_and_slow_traces_are_kept_and_a_share_of_the_rest(
    collector: tuple[str, str],
) -> None:
    otlp_http, query_url = collector
    error, slow = os.urandom(16).hex(), os.urandom(16).hex()
    ordinary = [os.urandom(16).hex() for _ in range(ORDINARY)]
    spans = [span(error, millis=5, error=True), span(slow, millis=900, error=False)]
    send(otlp_http, spans + [span(t, millis=5, error=False) for t in ordinary])
    kept: set[str] = set()
    deadline = time.monotonic() + 60
    while {error, slow} - kept and time.monotonic() < deadline:
        time.sleep(1)
        found = get_json(f"{query_url}/api/traces?service={SERVICE}&limit=1000")["data"] or []
        kept = {trace["traceID"].rjust(32, "0") for trace in found}
    time.sleep(3)  # the rest were decided with them; let the last export land
    found = get_json(f"{query_url}/api/traces?service={SERVICE}&limit=1000")["data"] or []
    kept = {trace["traceID"].rjust(32, "0") for trace in found}
    assert {error, slow} <= kept, "an error or a slow trace was dropped"
    share = len(kept & set(ordinary)) / ORDINARY
    assert 0.02 <= share <= 0.25, f"{share:.0%} of the ordinary traces kept, not about 10 %"
