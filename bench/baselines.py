"""The two bare baselines the generated service is measured against.

    python bench/baselines.py aiokafka  BOOTSTRAP IN OUT GROUP COUNT
    python bench/baselines.py faststream BOOTSTRAP IN OUT GROUP COUNT

Both do the service's work (decode the JSON request, build the result,
encode it, produce it keyed like the request) with the same at-least-once semantics: an offset is
committed only after the result is produced. Each exits once COUNT results
are out. Run with the generated service's interpreter, so all three use the
same aiokafka.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

PARTITIONS = 3  # as bench/run.py creates the topics: one consumer per partition, as the service
BATCH_SIZE = 1000  # the service's CONSUMER_BATCH_SIZE default


def result(request: dict[str, Any]) -> dict[str, Any]:
    """The same work as the template's handlers.handle."""
    return {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "company_name": request["company_name"],
        "industry": request["industry"],
        "source_event_id": request["event_id"],
    }


async def bare_aiokafka(bootstrap: str, source: str, sink: str, group: str, count: int) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=500)
            sent = []
            for records in batches.values():
                for record in records:
                    request = json.loads(record.value)
                    body = json.dumps(result(request)).encode()
                    sent.append(await producer.send(sink, body, key=record.key))
            if sent:
                await asyncio.gather(*sent)  # produced, then committed
                await consumer.commit()
                done += len(sent)
    finally:
        await consumer.stop()
        await producer.stop()


async def bare_faststream(bootstrap: str, source: str, sink: str, group: str, count: int) -> None:
    """FastStream without telemetry, metrics or dead letters, shaped like the service.

    The same consumers as the generated service (one batch subscriber per
    partition in one group), the same commit semantics (publish without
    waiting, then commit the batch once every result is acknowledged:
    `AckPolicy.NACK_ON_ERROR`), and FastStream's own JSON decoding and
    per-message `publish`; FastStream's per-message log lines at DEBUG as in
    the service.
    """
    import logging

    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker
    from faststream.kafka.annotations import KafkaMessage

    logging.basicConfig(level=logging.WARNING)
    broker = KafkaBroker(bootstrap, logger=logging.getLogger("faststream"), log_level=logging.DEBUG)
    finished = asyncio.Event()
    done = 0

    async def handle(requests: list[dict[str, Any]], message: KafkaMessage) -> None:
        nonlocal done
        deliveries = [
            await broker.publish(result(request), sink, key=record.key, no_confirm=True)
            for request, record in zip(requests, message.raw_message, strict=True)
        ]
        await asyncio.gather(*deliveries)  # then FastStream commits the batch
        done += len(requests)
        if done >= count:
            finished.set()

    for _ in range(PARTITIONS):
        broker.subscriber(
            source,
            group_id=group,
            batch=True,
            max_records=BATCH_SIZE,
            batch_timeout_ms=50,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
        )(handle)

    await broker.start()
    try:
        await finished.wait()
    finally:
        await broker.stop()


def main() -> None:
    kind, bootstrap, source, sink, group, count = sys.argv[1:7]
    run = {"aiokafka": bare_aiokafka, "faststream": bare_faststream}[kind]
    asyncio.run(run(bootstrap, source, sink, group, int(count)))


if __name__ == "__main__":
    main()
