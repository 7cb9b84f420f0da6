"""Kafka with N brokers on loopback: N KRaft nodes in one quorum (``--kafka-brokers``).

Each node is broker and controller in one JVM (servers/kafka.py), as the single
node is. Three combined nodes give a three-voter quorum, which survives one
node's loss, with three JVMs instead of six: dedicated controllers would need
three more processes, too many for a laptop or a two-core CI runner. The cost:
losing two nodes loses the quorum too, so nothing changes in the metadata until
one returns (which is also when writes may resume, as min.insync.replicas=2
wants anyway).

With three or more nodes, topics get three replicas and ``min.insync.replicas=2``
(Kafka.properties, Kafka.create_topics). The nodes start together: none is
ready until a majority of the quorum runs.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from platform_native.processes import HOST
from platform_native.servers.base import ServerError
from platform_native.servers.kafka import Kafka, build_kafka
from platform_native.tools import ToolError

TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
# One partition in `kafka-topics --describe`: "Partition: 0  Leader: 2  Replicas: 2,3,1  Isr: 2,3".
PARTITION_LINE = re.compile(
    r"Topic: (?P<topic>\S+)\s+Partition: (?P<partition>\d+)\s+Leader: (?P<leader>\S+)"
    r"\s+Replicas: (?P<replicas>[\d,]*)\s+Isr: (?P<isr>[\d,]*)"
)


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata describes it."""

    topic: str
    partition: int
    leader: int | None  # None: offline, no replica can lead
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


def parse_describe(output: str) -> list[PartitionState]:
    """The partitions in the output of ``kafka-topics --describe``."""
    found = []
    for match in PARTITION_LINE.finditer(output):
        leader = match["leader"]
        found.append(
            PartitionState(
                match["topic"],
                int(match["partition"]),
                int(leader) if leader.lstrip("-").isdigit() and int(leader) >= 0 else None,
                tuple(int(r) for r in match["replicas"].split(",") if r),
                tuple(int(r) for r in match["isr"].split(",") if r),
            )
        )
    return found


def describe_partitions(
    node: Kafka, bootstrap: str, topic: str | None = None
) -> list[PartitionState]:
    """Every partition (internal topics too), or ``topic``'s, with Kafka's TopicCommand."""
    args = ["--bootstrap-server", bootstrap, "--describe", *(["--topic", topic] if topic else [])]
    try:
        result = node.tool(TOPIC_COMMAND, *args)
    except subprocess.TimeoutExpired as error:
        raise ToolError(f"kafka-topics --describe timed out after {error.timeout}s") from error
    if result.returncode != 0:
        raise ToolError(f"kafka-topics --describe failed:\n{result.stdout}{result.stderr}")
    return parse_describe(result.stdout)


class KafkaCluster:
    """``brokers`` Kafka nodes in one KRaft quorum, node ids 1..N.

    The nodes' work directories are ``<workdir>/kafka``, ``<workdir>/kafka-2``, ...
    """

    def __init__(
        self, workdir: Path | str, brokers: int = 3, *, heap: str = "512m", detach: bool = False
    ) -> None:
        if brokers < 1:
            raise ServerError(f"a Kafka cluster needs at least one broker, not {brokers}")
        jars = build_kafka()
        replication = min(brokers, 3)
        self.nodes = [
            Kafka(
                Path(workdir) / ("kafka" if node_id == 1 else f"kafka-{node_id}"),
                jars=jars,
                heap=heap,
                detach=detach,
                node_id=node_id,
                replication=replication,
            )
            for node_id in range(1, brokers + 1)
        ]
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.voters = voters
            node.cluster_id = self.nodes[0].cluster_id

    @property
    def bootstrap(self) -> str:
        """Every node's ``127.0.0.1:PORT``, comma-separated (``bootstrap.servers``)."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def replication(self) -> int:
        return self.nodes[0].replication

    def node(self, node_id: int) -> Kafka:
        """The node with Kafka's ``node.id`` ``node_id`` (a partition's leader, say)."""
        return self.nodes[node_id - 1]

    def running_node(self) -> Kafka:
        """A node whose process runs, to run Kafka's tools against."""
        for node in self.nodes:
            if node.is_running():
                return node
        raise ServerError("no node of the Kafka cluster is running")

    def start(self) -> KafkaCluster:
        """Launch every node not running, then wait for each: a quorum needs a majority."""
        waiting = [node for node in self.nodes if not node.is_running()]
        try:
            for node in waiting:
                node.configure()
                node._launch()
            for node in waiting:
                node._wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (controlled shutdown); the data stays."""
        for node in reversed(self.nodes):
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def create_topics(self, names: Sequence[str], partitions: int = 3) -> None:
        """Create topics with the cluster's replication (3: ``min.insync.replicas=2``)."""
        self.running_node().create_topics(names, partitions=partitions)

    def partitions(self, topic: str | None = None) -> list[PartitionState]:
        """What the cluster's metadata says of every partition, or of ``topic``'s."""
        live = ",".join(n.bootstrap for n in self.nodes if n.is_running())
        return describe_partitions(self.running_node(), live, topic)

    def wait_in_sync(self, timeout: float = 120.0) -> float:
        """Wait until every partition has its whole ISR; return the seconds it took."""
        started = time.monotonic()
        while True:
            try:
                behind = [p for p in self.partitions() if p.under_replicated or p.leader is None]
            except ToolError:
                behind = None
            if behind == []:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ServerError(f"ISR not whole after {timeout:.0f}s: {behind}")
            time.sleep(1.0)
