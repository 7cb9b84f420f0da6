"""Command line: read the offsets every few seconds and serve them at /metrics.

    python -m lag_exporter --kafka 127.0.0.1:9092 --listen 127.0.0.1:9308 --interval 5

While Kafka does not answer, only ``kafka_brokers 0`` is served (no stale
lag), and the clients are made again on the next round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from prometheus_client import CollectorRegistry, start_http_server

from lag_exporter import offsets
from lag_exporter.metrics import LagCollector

logger = logging.getLogger("lag_exporter")


async def refresh_forever(bootstrap: str, interval: float, collector: LagCollector) -> None:
    """Keep ``collector.offsets`` current; reconnect after any error.

    Any: besides Kafka's errors, aiokafka raises plain ValueErrors on answers
    it cannot decode, and an exporter that dies takes the lag alerts with it.
    """
    while True:
        try:
            async with offsets.connect(bootstrap) as clients:
                logger.info("connected to Kafka at %s", bootstrap)
                while True:
                    collector.offsets = await offsets.read(clients)
                    await asyncio.sleep(interval)
        except Exception as error:  # whatever a read meets, keep serving
            collector.offsets = offsets.Offsets()
            logger.warning("Reading Kafka failed (%r); trying again in %.0fs", error, interval)
            await asyncio.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lag_exporter", description=__doc__)
    parser.add_argument("--kafka", required=True, help="bootstrap servers, host:port[,...]")
    parser.add_argument("--listen", default="127.0.0.1:9308", help="host:port of /metrics")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    registry = CollectorRegistry()
    collector = LagCollector()
    registry.register(collector)
    host, _, port = args.listen.rpartition(":")
    start_http_server(int(port), addr=host, registry=registry)
    logger.info("serving /metrics on %s", args.listen)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(refresh_forever(args.kafka, args.interval, collector))
    return 0


if __name__ == "__main__":
    sys.exit(main())
