"""The bare baselines the generated service is measured against, with its client settings.

    python bench/baselines.py settings       PACKAGE
    python bench/baselines.py sampling       PACKAGE
    python bench/baselines.py aiokafka       PACKAGE BOOTSTRAP IN OUT GROUP
    python bench/baselines.py aiokafka_batch PACKAGE BOOTSTRAP IN OUT GROUP
    python bench/baselines.py faststream     PACKAGE BOOTSTRAP IN OUT GROUP

Run with the generated service's interpreter: every baseline takes its Kafka client
settings from the chassis (`event_chassis.clients`) and the service's own Settings
(PACKAGE), exactly what the service runs with: the same producer batch size, linger
and acks, the same number of consumers in the group, records per fetch, fetch wait
and heartbeat. All do the service's work (decode the JSON request, build the result,
encode it, produce it keyed like the request) with the same at-least-once semantics:
a batch is committed only once every result in it is acknowledged. They differ only
in how they produce: `aiokafka` awaits `send()` per result (what most hand-written
code does); `aiokafka_batch` appends a consumed batch's results to one record batch
per partition (`create_batch`/`send_batch`, as the chassis does: the client's
limit); `faststream` calls `broker.publish` per result. None validates, traces,
counts metrics, retries or dead-letters. Each runs until terminated (the bench
measures it from outside). `settings` prints what each variant uses and `sampling`
the service's default trace sampling, for the report.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from event_chassis import clients


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


def service_settings(package: str, group: str) -> Any:
    """The service's own settings, as its environment gives them."""
    return importlib.import_module(f"{package}.settings").Settings(consumer_group=group)


def consumer_settings(package: str, group: str) -> dict[str, Any]:
    consumer: dict[str, Any] = clients.consumer(service_settings(package, group))
    return consumer


def producer_settings(package: str) -> dict[str, Any]:
    producer: dict[str, Any] = clients.producer(service_settings(package, "<group>"))
    return producer


def settings(package: str) -> dict[str, dict[str, Any]]:
    """Every client setting of every variant, from the code that sets it."""
    consumer = consumer_settings(package, "<group>")
    return {
        "producer": producer_settings(package),
        "consumer": {key: value for key, value in consumer.items() if key != "group_id"},
    }


def default_sampling(package: str) -> str:
    """The service's trace sampling when nothing sets it: `sampler ratio`."""
    settings = importlib.import_module(f"{package}.settings").Settings(_env_file=None)
    return f"{settings.otel_traces_sampler} {settings.otel_traces_sampler_arg}"


class BareConsumers:
    """The service's consumers and producer in bare aiokafka: fetch, produce, then commit."""

    def __init__(
        self,
        package: str,
        bootstrap: str,
        source: str,
        sink: str,
        group: str,
        *,
        batch: bool = False,
    ) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.partitioner import DefaultPartitioner

        self.settings = consumer_settings(package, group)
        self.sink = sink
        self.batch = batch  # results through record batches rather than send() each
        self.partitioner = DefaultPartitioner()
        self.partitions: list[int] = []
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings(package))
        self.consumers = [
            AIOKafkaConsumer(
                source,
                bootstrap_servers=bootstrap,
                group_id=self.settings["group_id"],
                heartbeat_interval_ms=self.settings["heartbeat_interval_ms"],
                session_timeout_ms=self.settings["session_timeout_ms"],
                max_poll_interval_ms=self.settings["max_poll_interval_ms"],
                fetch_max_bytes=self.settings["fetch_max_bytes"],
                max_partition_fetch_bytes=self.settings["max_partition_fetch_bytes"],
                auto_offset_reset=self.settings["auto_offset_reset"],
                enable_auto_commit=self.settings["enable_auto_commit"],
            )
            for _ in range(self.settings["consumers"])
        ]

    async def start(self) -> None:
        await self.producer.start()
        await asyncio.gather(*(one.start() for one in self.consumers))

    async def stop(self) -> None:
        await asyncio.gather(*(one.stop() for one in self.consumers))
        await self.producer.stop()

    async def run(self, until: asyncio.Event) -> None:
        """Every consumer's loop, until `until` is set."""
        loops = [asyncio.create_task(self._loop(one, until)) for one in self.consumers]
        await until.wait()
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def _loop(self, one: Any, until: asyncio.Event) -> None:
        while not until.is_set():
            batches = await one.getmany(
                timeout_ms=self.settings["fetch_wait_ms"], max_records=self.settings["max_records"]
            )
            records = [record for partition in batches.values() for record in partition]
            sent = await (self._batched(records) if self.batch else self._each(records))
            if sent:
                await asyncio.gather(*sent)  # produced, then committed
                await one.commit()

    async def _each(self, records: list[Any]) -> list[Any]:
        """`send()` per result: a future and two awaited coroutines each."""
        sent = []
        for record in records:
            body = json.dumps(result(json.loads(record.value))).encode()
            sent.append(await self.producer.send(self.sink, body, key=record.key))
        return sent

    async def _batched(self, records: list[Any]) -> list[Any]:
        """One record batch per partition, sent as it fills and at the end: aiokafka's
        documented batch API, partitioned by key with the producer's partitioner."""
        if not self.partitions:
            self.partitions = sorted(await self.producer.partitions_for(self.sink))
        builders: dict[int, Any] = {}
        sent = []
        for record in records:
            body = json.dumps(result(json.loads(record.value))).encode()
            partition = self.partitioner(record.key, self.partitions, self.partitions)
            builder = builders.get(partition)
            if (
                builder is None
                or builder.append(timestamp=None, key=record.key, value=body, headers=[]) is None
            ):
                if builder is not None:  # full: it leaves now, this result starts the next
                    sent.append(
                        await self.producer.send_batch(builder, self.sink, partition=partition)
                    )
                builder = builders[partition] = self.producer.create_batch()
                builder.append(timestamp=None, key=record.key, value=body, headers=[])
        for partition, builder in builders.items():
            sent.append(await self.producer.send_batch(builder, self.sink, partition=partition))
        return sent


async def bare_aiokafka(
    package: str, bootstrap: str, source: str, sink: str, group: str, *, batch: bool = False
) -> None:
    bare = BareConsumers(package, bootstrap, source, sink, group, batch=batch)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await bare.start()
    try:
        await bare.run(stop)
    finally:
        await bare.stop()


async def bare_aiokafka_batch(
    package: str, bootstrap: str, source: str, sink: str, group: str
) -> None:
    await bare_aiokafka(package, bootstrap, source, sink, group, batch=True)


async def bare_faststream(package: str, bootstrap: str, source: str, sink: str, group: str) -> None:
    """FastStream without telemetry, metrics or dead letters, shaped like the service.

    Its batch subscribers and commit policy (`AckPolicy.NACK_ON_ERROR`: the batch is
    committed after the handler, which waits for every result), FastStream's JSON
    decoding and one `publish` per message; its per-message log lines at DEBUG as in
    the service.
    """
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker
    from faststream.kafka.annotations import KafkaMessage

    logging.basicConfig(level=logging.WARNING)
    consumer = consumer_settings(package, group)
    broker = KafkaBroker(
        bootstrap,
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
        **producer_settings(package),
    )
    finished = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, finished.set)

    async def handle(requests: list[dict[str, Any]], message: KafkaMessage) -> None:
        deliveries = [
            await broker.publish(result(request), sink, key=record.key, no_confirm=True)
            for request, record in zip(requests, message.raw_message, strict=True)
        ]
        await asyncio.gather(*deliveries)  # then FastStream commits the batch

    for _ in range(consumer["consumers"]):
        broker.subscriber(
            source,
            group_id=consumer["group_id"],
            batch=True,
            max_records=consumer["max_records"],
            batch_timeout_ms=consumer["fetch_wait_ms"],
            heartbeat_interval_ms=consumer["heartbeat_interval_ms"],
            auto_offset_reset=consumer["auto_offset_reset"],
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )(handle)

    await broker.start()
    try:
        await finished.wait()
    finally:
        await broker.stop()


def main() -> None:
    kind, package = sys.argv[1:3]
    if kind == "settings":
        print(json.dumps(settings(package)))
        return
    if kind == "sampling":
        print(default_sampling(package))
        return
    bootstrap, source, sink, group = sys.argv[3:7]
    run = {
        "aiokafka": bare_aiokafka,
        "aiokafka_batch": bare_aiokafka_batch,
        "faststream": bare_faststream,
    }[kind]
    asyncio.run(run(package, bootstrap, source, sink, group))


if __name__ == "__main__":
    main()
