"""Finish the batch in flight before a consumer hands its partitions over.

When a consumer joins or leaves the group (a new instance, a scale-down, or
this instance's own consumers starting one after another), Kafka rebalances
and every consumer gives up its partitions. A batch still being handled then
cannot commit, and the partitions' new owner handles it again. Kafka waits
for each consumer's revoke callback before it reassigns anything, and a
commit from the current generation is still accepted meanwhile: so the
callback below waits (bounded) until the batch in flight has been committed.
"""

from typing import Any

from aiokafka import ConsumerRebalanceListener


class FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.subscriber: Any = None  # set once FastStream has built the subscriber

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        if revoked:
            await wait_for_in_flight(self.subscriber, self.timeout)

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        """Nothing to do: the consumer resumes from the committed offsets."""


async def wait_for_in_flight(subscriber: Any, grace: float) -> None:
    """Wait, at most `grace` seconds, until `subscriber` has no message in flight."""
    # FastStream counts the messages in flight in a lock with `wait_release`.
    wait_release = getattr(getattr(subscriber, "lock", None), "wait_release", None)
    if wait_release is not None:
        await wait_release(grace)
