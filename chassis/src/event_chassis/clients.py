"""The Kafka client settings of every service, in one place.

The values come from the service's settings (`KAFKA_PRODUCER_*`, `KAFKA_CONSUMER_*`);
the defaults and why they are so are here. `make bench` gives its bare-aiokafka and
FastStream baselines the very same settings, so that what it compares differs only
in what the chassis adds.

- Producer batches of 256 KiB: with aiokafka's default of 16 KiB (about 15 results of
  1 KiB) a consumed batch of 1,000 took some 70 produce requests (~25 % slower). Well
  under Kafka's default 1 MiB record batch limit.
- `acks=all`: every in-sync replica has a result before its request is committed, so at
  least once survives a broker's loss (Kafka's own clients default to it since 3.0).
- `linger_ms=0`: send as soon as the previous request is done; batches form under load.
- A fetch waits up to 50 ms: an idle consumer polls that often; a busy one never waits.
- Heartbeats every 250 ms: a rebalance waits for each member's next heartbeat, and at
  start-up each of a service's consumers joins in turn (at aiokafka's 3 s, or 1 s, ready
  took 2.7-3.6 s; at 250 ms 1.2-2.1 s). The session timeout stays aiokafka's 10 s.
- The poll interval (`max_poll_interval_ms`) also bounds a batch: the consumer gives a
  batch at most half of it, or of the shut-down grace (see `batch_seconds`).
"""

from typing import Any

from .settings import ServiceSettings


def producer(settings: ServiceSettings) -> dict[str, Any]:
    """aiokafka producer settings (FastStream's KafkaBroker takes the same names; its
    `request_timeout_ms` is its consumers' too)."""
    acks: int | str = settings.kafka_producer_acks
    return {
        "acks": int(acks) if acks != "all" else acks,
        "max_batch_size": settings.kafka_producer_batch_bytes,
        "max_request_size": settings.kafka_producer_max_request_bytes,
        "linger_ms": settings.kafka_producer_linger_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }


def consumer(settings: ServiceSettings) -> dict[str, Any]:
    """One consumer of the service's group: aiokafka settings, and how it fetches."""
    return {
        "group_id": settings.consumer_group,
        "heartbeat_interval_ms": settings.kafka_consumer_heartbeat_interval_ms,
        "session_timeout_ms": settings.kafka_consumer_session_timeout_ms,
        "max_poll_interval_ms": settings.kafka_consumer_max_poll_interval_ms,
        "fetch_max_bytes": settings.kafka_consumer_fetch_max_bytes,
        "max_partition_fetch_bytes": settings.kafka_consumer_max_partition_fetch_bytes,
        "auto_offset_reset": "earliest",
        # Not the records of an outbox round that did not commit (see `relay`).
        "isolation_level": "read_committed",
        "enable_auto_commit": False,  # a batch is committed once its results are acknowledged
        "max_records": settings.consumer_batch_size,  # per fetch (getmany)
        "fetch_wait_ms": settings.kafka_consumer_fetch_wait_ms,  # getmany's timeout
        "consumers": settings.consumer_workers,
    }


def batch_seconds(settings: ServiceSettings) -> float:
    """How long one batch may take: half the poll interval or the shut-down grace.

    Past the poll interval Kafka takes the consumer's partitions away and its commit
    fails; past the grace a drain cuts the batch off. Either way the batch is read
    again, and every record of it handled (or dead-lettered) again.
    """
    poll_interval = settings.kafka_consumer_max_poll_interval_ms / 1000
    return min(poll_interval, settings.shutdown_grace_seconds) / 2
