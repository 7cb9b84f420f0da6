"""A Kafka that does not answer: the failed connects leave no client open (no server needed).

FastStream creates aiokafka's producer inside `broker.start()`; when Kafka refuses
the connection it dropped that producer unclosed, and aiokafka logged
`Unclosed AIOKafkaProducer` at ERROR for every retry and at shut-down.
"""

import asyncio
import gc
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from faststream.kafka import KafkaBroker

from event_chassis import broker
from event_chassis.testing import test_settings

from .example import Settings


@pytest.fixture
def refusing_address() -> Iterator[str]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


async def test_failed_connects_leave_no_kafka_client_open(refusing_address: str) -> None:
    kafka = broker.create_broker(test_settings(Settings, kafka_bootstrap_servers=refusing_address))
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _attempt in range(3):  # as broker.connect retries
            with pytest.raises(KafkaConnectionError):
                await kafka.start()
        await kafka.stop()
        gc.collect()  # aiokafka reports an unclosed client when it is collected

    assert [str(w.message) for w in caught if "Unclosed" in str(w.message)] == []
    assert [ctx["message"] for ctx in reported] == []


def test_a_clusters_address_list_reaches_faststream_as_one_address_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`KAFKA_BOOTSTRAP_SERVERS=a:1,b:2` (three native brokers): FastStream took the whole
    string for one host. The real three-broker runs are tests/test_kafka_cluster.py."""
    seen: list[Any] = []

    def spy(servers: Any, **options: Any) -> Any:
        seen.append(servers)
        return KafkaBroker(servers, **options)

    monkeypatch.setattr(broker, "KafkaBroker", spy)
    servers = "127.0.0.1:9092,127.0.0.1:9093"
    broker.create_broker(test_settings(Settings, kafka_bootstrap_servers=servers))
    assert seen == [["127.0.0.1:9092", "127.0.0.1:9093"]]
