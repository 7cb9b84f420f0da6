"""The local alert receiver (infrastructure/alertmanager/alert_log.py), in-process.

It runs on a free loopback port in a thread; Alertmanager's side of the
exchange (a real webhook) is in tests/test_alerting.py.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from platform_native.configs import ALERT_LOG_SCRIPT


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("alert_log", ALERT_LOG_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


alert_log = load_script()

# What Alertmanager posts (webhook payload version 4), trimmed to what matters.
PAYLOAD = {
    "version": "4",
    "groupKey": '{}/{service=~".+"}:{alertname="ServiceDown", service="orders"}',
    "status": "firing",
    "receiver": "service-page",
    "groupLabels": {"alertname": "ServiceDown", "service": "orders"},
    "commonLabels": {"alertname": "ServiceDown", "service": "orders", "severity": "critical"},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ServiceDown", "service": "orders", "severity": "critical"},
            "annotations": {"summary": "orders is down: no instance answers"},
            "startsAt": "2026-01-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "abc123",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "ServiceDown", "service": "orders", "severity": "critical"},
            "annotations": {},
            "startsAt": "2026-01-01T09:00:00Z",
            "endsAt": "2026-01-01T09:30:00Z",
            "fingerprint": "def456",
        },
    ],
}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out = tmp_path / "logs" / "alerts.jsonl"
    server = alert_log.serve("127.0.0.1:0", out)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", out
    finally:
        server.shutdown()
        server.server_close()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_alert_of_a_webhook_becomes_one_line(
    receiver: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, out = receiver
    response = httpx.post(f"{url}/alerts", json=PAYLOAD, timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == {"appended": 2}

    first, second = lines(out)
    assert first["receiver"] == "service-page"
    assert first["status"] == "firing"
    assert first["labels"]["service"] == "orders"
    assert first["annotations"]["summary"] == "orders is down: no instance answers"
    assert first["fingerprint"] == "abc123"
    assert second["status"] == "resolved"
    assert second["ends_at"] == "2026-01-01T09:30:00Z"
    # GET /alerts serves the same lines; stdout has one short line per alert.
    assert httpx.get(f"{url}/alerts", timeout=5).json() == [first, second]
    printed = capsys.readouterr().out
    assert "FIRING critical ServiceDown service=orders: orders is down" in printed
    assert "RESOLVED critical ServiceDown service=orders" in printed


def test_a_second_webhook_appends(receiver: tuple[str, Path]) -> None:
    url, out = receiver
    for _ in range(3):
        assert httpx.post(f"{url}/alerts", json=PAYLOAD, timeout=5).status_code == 200
    assert len(lines(out)) == 6


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", json.dumps({"alerts": [{"no": "labels"}]}).encode(), b'{"x": 1}'],
)
def test_a_body_that_is_not_a_webhook_gets_400_and_writes_nothing(
    receiver: tuple[str, Path], body: bytes
) -> None:
    url, out = receiver
    response = httpx.post(f"{url}/alerts", content=body, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()
    assert out.read_text() == ""


def test_health_and_unknown_paths(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    assert httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
    assert httpx.get(f"{url}/nope", timeout=5).status_code == 404
    assert httpx.post(f"{url}/nope", json=PAYLOAD, timeout=5).status_code == 404
