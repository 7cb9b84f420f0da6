"""The platform's local alert receiver: Alertmanager's webhooks, appended to a JSON lines file.

Every receiver in alertmanager.yml sends here out of the box, so alerts work
on a laptop with no Slack, e-mail or PagerDuty account; a team adds those
next to it. Each alert of each notification becomes one line (with the
receiver that routed it) in the output file, and one short line on stdout
(`docker compose logs alert-log`, `./deploy-all.sh logs`).

Standard library only: Compose runs it in a plain Python image and the native
platform with whichever Python runs platform_native::

    python3 alert_log.py --listen 127.0.0.1:9099 --out alerts.jsonl

Endpoints: ``POST /alerts`` (Alertmanager's webhook payload, version 4),
``GET /alerts`` (the lines so far, as a JSON array) and ``GET /health``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY_BYTES = 1024 * 1024  # Alertmanager caps a webhook's alerts; this is plenty


class BadPayload(ValueError):
    """The body is not an Alertmanager webhook payload."""


def lines_of(payload: Any, received_at: str) -> list[dict[str, Any]]:
    """One record per alert of a webhook payload; BadPayload if it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadPayload("expected an Alertmanager webhook payload with an 'alerts' list")
    records = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise BadPayload("every alert needs a 'labels' object")
        records.append(
            {
                "received_at": received_at,
                "receiver": payload.get("receiver", ""),
                "status": alert.get("status", payload.get("status", "")),
                "labels": alert["labels"],
                "annotations": alert.get("annotations", {}),
                "starts_at": alert.get("startsAt", ""),
                "ends_at": alert.get("endsAt", ""),
                "fingerprint": alert.get("fingerprint", ""),
                "group_key": payload.get("groupKey", ""),
            }
        )
    return records


def summary(record: dict[str, Any]) -> str:
    """``FIRING critical ServiceDown service=value-architect: <summary>`` for stdout."""
    labels = record["labels"]
    where = " ".join(f"{key}={labels[key]}" for key in ("service", "instance") if key in labels)
    text = record["annotations"].get("summary", "")
    return (
        f"{record['status'].upper()} {labels.get('severity', '-')} "
        f"{labels.get('alertname', '?')} {where}: {text} (receiver {record['receiver']})"
    )


class AlertLog:
    """Appends records to one file; a lock keeps concurrent webhooks' lines whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._lock = threading.Lock()

    def append(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(text)
        for record in records:
            print(summary(record), flush=True)

    def read(self) -> list[dict[str, Any]]:
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def handler_for(log: AlertLog) -> type[BaseHTTPRequestHandler]:
    """The request handler class, bound to one log."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "alert-log"

        def do_GET(self) -> None:  # the name http.server calls
            if self.path == "/health":
                self._answer(200, {"status": "ok"})
            elif self.path == "/alerts":
                self._answer(200, log.read())
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/alerts":
                self._answer(404, {"error": "not found"})
                return
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_BODY_BYTES:
                self._answer(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                return
            try:
                payload = json.loads(self.rfile.read(size))
                records = lines_of(payload, datetime.now(UTC).isoformat(timespec="seconds"))
            except (ValueError, BadPayload) as error:
                # Alertmanager retries on 5xx only; a 400 says the request itself is wrong.
                self._answer(400, {"error": str(error)})
                return
            log.append(records)
            self._answer(200, {"appended": len(records)})

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the alerts themselves are what this prints."""

    return Handler


def serve(listen: str, out: Path) -> ThreadingHTTPServer:
    """A server for ``host:port`` writing to ``out``; call serve_forever() on it."""
    host, _, port = listen.rpartition(":")
    return ThreadingHTTPServer((host, int(port)), handler_for(AlertLog(out)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9099", help="host:port (127.0.0.1:9099)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON lines file")
    args = parser.parse_args(argv)
    server = serve(args.listen, args.out)
    print(f"alert-log: listening on {args.listen}, appending to {args.out}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
