"""The latency baseline: the two-service chain of `make bench` in bare aiokafka.

    python bench/chain.py first  PACKAGE BOOTSTRAP PORT REQUESTED CREATED GROUP
    python bench/chain.py second PACKAGE BOOTSTRAP CREATED AUDITED GROUP

`first` accepts `POST /api/v1/value-models` (a raw ASGI app under uvicorn: no
validation, routing, middleware or tracing), produces the request with `send_and_wait`
and answers 202 once Kafka acknowledged it; its consumers turn requests into results,
as value-architect does. `second` turns those into audits, as value-auditor does. The
consumers and producers are bench/baselines.py's batch-API loop, with the chassis'
client settings: the services produce results the same way, so the chains differ by
what the chassis adds (FastAPI and pydantic, tracing, log export, metrics, retries
and dead letters, health and Consul) and not by how they produce. Runs until
terminated.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from baselines import BareConsumers


def request_event(body: bytes) -> tuple[bytes, bytes]:
    """The request event the API publishes, and its key."""
    subject = json.loads(body)
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "company_name": subject["company_name"],
        "industry": subject["industry"],
    }
    return json.dumps(event).encode(), subject["company_name"].encode()


def api(bare: BareConsumers, topic: str) -> Any:
    """The HTTP API as a raw ASGI app: read the body, publish, wait for the ack, 202."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":  # e.g. the bench asking whether it is up yet
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        event, key = request_event(body)
        await bare.producer.send_and_wait(topic, event, key=key)
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def first(
    package: str, bootstrap: str, port: str, requested: str, created: str, group: str
) -> None:
    import uvicorn

    bare = BareConsumers(package, bootstrap, requested, created, group, batch=True)
    await bare.start()
    config = uvicorn.Config(
        api(bare, requested), host="127.0.0.1", port=int(port), log_level="warning"
    )
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    consuming = asyncio.create_task(bare.run(stop))
    try:
        await server.serve()  # until SIGTERM
    finally:
        stop.set()
        await consuming
        await bare.stop()


async def second(package: str, bootstrap: str, created: str, audited: str, group: str) -> None:
    bare = BareConsumers(package, bootstrap, created, audited, group, batch=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await bare.start()
    try:
        await bare.run(stop)
    finally:
        await bare.stop()


def main() -> None:
    role, *args = sys.argv[1:]
    asyncio.run(first(*args) if role == "first" else second(*args))


if __name__ == "__main__":
    main()
