"""The Kafka client settings of every service, in one place.

The broker's producer and each consumer get these, and `make bench` gives its
bare-aiokafka and FastStream baselines the very same ones, so that what it
compares differs only in what the chassis adds.
"""

from typing import Any

from .settings import ServiceSettings

# A batch's results leave in a few produce requests: with aiokafka's default of 16 KiB
# (about 15 messages of 1 KiB) a batch of 1,000 took some 70 (~25 % slower). Well under
# Kafka's default 1 MiB record batch limit.
PRODUCER_BATCH_BYTES = 256 * 1024
# Every in-sync replica has a result before its request is committed: at least once
# survives a broker's loss (Kafka's own clients default to this since 3.0).
ACKS = "all"
LINGER_MS = 0  # send as soon as the previous request is done; batches form under load
FETCH_WAIT_MS = 50  # an idle consumer polls this often; a busy one never waits
# A rebalance waits for each member's next heartbeat, and at start-up each of a service's
# consumers joins in turn: at 1 s (aiokafka: 3 s) ready took 2.7-3.6 s, at 250 ms 1.2-2.1 s.
# Four tiny requests a second per consumer; the session timeout stays aiokafka's 10 s.
HEARTBEAT_MS = 250


def producer() -> dict[str, Any]:
    """aiokafka producer settings (FastStream's KafkaBroker takes the same names)."""
    return {"acks": ACKS, "max_batch_size": PRODUCER_BATCH_BYTES, "linger_ms": LINGER_MS}


def consumer(settings: ServiceSettings) -> dict[str, Any]:
    """One consumer of the service's group: aiokafka settings, and how it fetches."""
    return {
        "group_id": settings.consumer_group,
        "heartbeat_interval_ms": HEARTBEAT_MS,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,  # a batch is committed once its results are acknowledged
        "max_records": settings.consumer_batch_size,  # per fetch (getmany)
        "fetch_wait_ms": FETCH_WAIT_MS,  # getmany's timeout
        "consumers": settings.consumer_workers,
    }
