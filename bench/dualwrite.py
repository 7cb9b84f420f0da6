"""The write path's baseline: the bare dual write a team would write by hand.

    python bench/dualwrite.py PACKAGE BOOTSTRAP PORT TOPIC DSN_FILE

`POST /api/v1/value-models` (a raw ASGI app under uvicorn) inserts the request's row
with asyncpg, then sends its event with aiokafka and waits for the acknowledgement,
then answers 201. It is the unsafe version: a process that dies between the two
loses the event, and nothing ties the event to the transaction. The generated
service with `database=postgres` instead writes the row and an outbox row in one
transaction and answers 201; its relay publishes the event afterwards. The same
table as the service's `requests`, a pool as large as the service's (SQLAlchemy's
pool_size plus its default overflow of 10) and the chassis' producer settings
(bench/baselines.py). Run with the stateful service's interpreter; until terminated.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from baselines import producer_settings, service_settings

TABLE = """CREATE TABLE IF NOT EXISTS requests (
    id uuid PRIMARY KEY, company_name text NOT NULL, industry text NOT NULL,
    status text NOT NULL DEFAULT 'accepted', accepted_at timestamptz NOT NULL DEFAULT now())"""
INSERT = "INSERT INTO requests (id, company_name, industry) VALUES ($1, $2, $3)"
OVERFLOW = 10  # SQLAlchemy's default max_overflow, over the service's pool_size


def api(pool: Any, producer: AIOKafkaProducer, topic: str) -> Any:
    """Insert the row, then send the event and wait for Kafka's acknowledgement: 201."""

    async def respond(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":  # e.g. the bench asking whether it is up yet
            await respond(send, 404, b"")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        subject = json.loads(body)
        event_id = uuid.uuid4()
        await pool.execute(INSERT, event_id, subject["company_name"], subject["industry"])
        event = {
            "schema_version": 1,
            "event_id": str(event_id),
            "occurred_at": datetime.now(UTC).isoformat(),
            "company_name": subject["company_name"],
            "industry": subject["industry"],
        }
        key = subject["company_name"].encode()
        await producer.send_and_wait(topic, json.dumps(event).encode(), key=key)
        await respond(send, 201, json.dumps({"event_id": str(event_id)}).encode())

    return app


async def main(package: str, bootstrap: str, port: str, topic: str, dsn_file: str) -> None:
    size = service_settings(package, "dual-write").database_pool_size
    dsn = Path(dsn_file).read_text().strip()
    pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size + OVERFLOW)
    await pool.execute(TABLE)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings(package))
    await producer.start()
    config = uvicorn.Config(
        api(pool, producer, topic), host="127.0.0.1", port=int(port), log_level="warning"
    )
    try:
        await uvicorn.Server(config).serve()  # until SIGTERM
    finally:
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
