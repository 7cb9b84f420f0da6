"""The Kafka broker: created from the settings, connected in the background.

The service must serve (health, metrics, a 503 with the reason) while Kafka
is down, so connecting retries with capped backoff instead of failing start-up.
"""

import asyncio
import logging
from contextlib import suppress

from faststream.kafka import KafkaBroker
from prometheus_client import Gauge

from . import _faststream, clients
from .health import KAFKA, Readiness
from .results import Results
from .security import kafka_security
from .settings import ServiceSettings

logger = logging.getLogger(__name__)


def create_broker(settings: ServiceSettings) -> KafkaBroker:
    kafka = KafkaBroker(
        # `host:port,host:port` as Kafka's clients take it: FastStream reads one string as
        # one address, so a cluster's list (three brokers) is split here.
        settings.kafka_bootstrap_servers.split(","),
        client_id=settings.service_id,
        security=kafka_security(settings),
        # What `subscriber.stop()` waits for the batch in flight before leaving the group.
        graceful_timeout=settings.shutdown_grace_seconds,
        **clients.producer(settings),
        # FastStream writes two lines per message whatever LOG_LEVEL says; through the
        # standard logger they are DEBUG lines, and its errors still show.
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )
    _faststream.close_producer_when_start_fails(kafka)
    return kafka


async def connect(
    broker: KafkaBroker,
    results: Results,
    readiness: Readiness,
    connected: Gauge,
    max_backoff: float = 5.0,
) -> None:
    """Start the results' producer, then the broker (its consumers), retrying with backoff
    until Kafka answers."""
    delay = 0.25
    while True:
        try:
            await results.start()
            await broker.start()
        except Exception as error:
            readiness.fail(KAFKA, f"Kafka unreachable: {error!r}")
            connected.set(0)
            logger.warning("Kafka unreachable (%r); retrying in %.1fs", error, delay)
            with suppress(Exception):
                await results.stop()
            with suppress(Exception):
                await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
        else:
            readiness.ok(KAFKA)
            connected.set(1)
            logger.info("Kafka connected")
            return
