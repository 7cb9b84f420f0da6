"""Three real Kafka brokers losing one, two, or each in turn, under a service's steady load.

A generated value-architect runs as its own process against a three-node KRaft
cluster (servers/kafka_cluster.py: replication 3, min.insync.replicas=2) while
tests/steady_load.py feeds it 10,000 requests, each sent until acknowledged.
Every case reads the results topic back and counts, per request, what is lost
(no result) and duplicated (more than one). 0 lost is required; duplicates are
reported: the service's producer has no idempotence (README, "Three Kafka
brokers"), so a retry after a leader change may write a result twice.

The leader-kill case also runs in `make test` (marked infra); the others are in
`make report` only. First, the command line: `up --kafka-brokers 3`, `status`
with the ISR, `down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from platform_native.processes import group_members
from platform_native.servers.kafka_cluster import KafkaCluster, PartitionState, parse_describe
from platform_native.services import ServiceProcess

from . import report
from .conftest import REPO, Platform
from .kafka_clients import end_offsets, read_until
from .rendering import Installed, render_and_install
from .steady_load import SteadyLoad

pytestmark = pytest.mark.reliability

TOTAL = 10_000
PARTITIONS = 3
READINESS_BOUND_SECONDS = 10.0
OUTAGE_SECONDS = 20.0  # two brokers down, or one frozen: longer than the ISR lag bound (10 s)


# ------------------------------------------------------------------ the parts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), 3, heap="384m")
    try:
        yield cluster.start()
    finally:
        for node in cluster.nodes:  # a frozen node would not stop on SIGTERM
            if node.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGCONT)
        cluster.stop()


@pytest.fixture(autouse=True)
def _whole_cluster(request: pytest.FixtureRequest) -> None:
    """Each case starts with every broker up and every ISR whole, even after a failed one."""
    if "cluster" not in request.fixturenames:
        return
    cluster: KafkaCluster = request.getfixturevalue("cluster")
    for node in cluster.nodes:
        if node.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGCONT)
    cluster.start()
    cluster.wait_in_sync()


@pytest.fixture(scope="module")
def architect(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return render_and_install(tmp_path_factory.mktemp("kafka-cluster-service"))


def ready_status(process: ServiceProcess) -> int:
    try:
        return httpx.get(f"{process.url}/health/ready", timeout=3).status_code
    except httpx.HTTPError:
        return 0


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until `check()` holds, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    return None


@dataclass
class Run:
    """The service, its topics and the load of one case."""

    cluster: KafkaCluster
    process: ServiceProcess
    requested: str
    created: str
    load: SteadyLoad
    created_partitions: list[PartitionState]  # before the load: leaders stay put until a fault
    frozen: set[int] = field(default_factory=set)  # node ids not to ask: they never answer

    def result_ends(self) -> dict[int, int]:
        """The results topic's end offset per partition ({} while it cannot be read).

        Asked of the running, unfrozen brokers with a 5 s timeout: a frozen broker
        accepts connections and never answers, which would hold a count for 40 s.
        """
        nodes = self.cluster.nodes
        live = [n.bootstrap for n in nodes if n.is_running() and n.node_id not in self.frozen]

        try:
            return end_offsets(",".join(live), self.created, PARTITIONS, timeout=5)
        except Exception:  # no leader to ask right now
            return {}

    def results(self) -> int:
        return sum(self.result_ends().values())

    def wait_results(self, count: int, timeout: float = 120) -> None:
        assert wait_for(lambda: self.results() >= count, timeout), self.process.log_tail()

    def finish(self) -> dict[str, int]:
        """Wait for the whole load and its results; lost and duplicated, per request."""
        assert self.load.join(300), f"{len(self.load.acked)}/{TOTAL} requests acknowledged"
        acked = set(self.load.acked)
        records = read_until(
            self.cluster.bootstrap,
            self.created,
            lambda rs: acked <= {r.key for r in rs},
            240,
        )
        seen = Counter(record.key for record in records)
        sent = read_until(
            self.cluster.bootstrap, self.requested, lambda rs: len(rs) >= len(acked), 60
        )
        inputs = Counter(record.key for record in sent)
        return {
            "messages": len(acked),
            "lost": len(acked - seen.keys()),
            "duplicates": sum(count - 1 for count in seen.values()),
            "requests_sent_twice": sum(count - 1 for count in inputs.values()),
            "sends_refused": self.load.failed_sends,
        }


@contextlib.contextmanager
def service_under_load(
    platform: Platform, cluster: KafkaCluster, architect: Installed, name: str, rate: float
) -> Iterator[Run]:
    """The service on its own topics (3 replicas), ready, with the load started."""
    prefix = f"cluster-{name}-{uuid.uuid4().hex[:6]}"
    requested, created, dead = f"{prefix}.requested", f"{prefix}.created", f"{prefix}.dead-letter"
    cluster.create_topics([requested, created, dead], partitions=PARTITIONS)
    env = platform.service_env(
        KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap,
        KAFKA_CHECK_INTERVAL_SECONDS="1",
        CONSUL_ENABLED="false",
        SERVICE_INSTANCE_ID=prefix,
        CONSUMES_TOPIC=requested,
        PRODUCES_TOPIC=created,
        DEAD_LETTER_TOPIC=dead,
        CONSUMER_GROUP=prefix,
    )
    log = architect.root / f"{name}.log"
    process = ServiceProcess(architect.info, architect.script, env, log).start()
    try:
        assert wait_for(lambda: ready_status(process) == 200, 90), process.log_tail()
        # Asked before the load starts: on a busy machine this JVM tool took so long that
        # the whole load was acknowledged before the leader-kill case's kill.
        partitions = cluster.partitions(created)
        load = SteadyLoad(cluster.bootstrap, requested, TOTAL, rate).start()
        yield Run(cluster, process, requested, created, load, partitions)
    finally:
        process.terminate()


def leader_of_most(partitions: list[PartitionState]) -> int:
    """The broker leading the most of these partitions (the lowest id on a tie)."""
    led = Counter(p.leader for p in partitions if p.leader is not None)
    return min(led, key=lambda node_id: (-led[node_id], node_id))


def alive(process: ServiceProcess) -> bool:
    return process.process is not None and process.process.poll() is None


# --------------------------------------------------------------- the command line


def test_parse_describe_reads_leaders_replicas_and_isr() -> None:
    output = (
        "Topic: t\tTopicId: x\tPartitionCount: 2\tReplicationFactor: 3\tConfigs: \n"
        "\tTopic: t\tPartition: 0\tLeader: 2\tReplicas: 2,3,1\tIsr: 2,1\tElr: \n"
        "\tTopic: t\tPartition: 1\tLeader: none\tReplicas: 3,1,2\tIsr: 3\tElr: \n"
    )
    first, second = parse_describe(output)
    assert (first.leader, first.replicas, first.isr, first.under_replicated) == (
        2,
        (2, 3, 1),
        (2, 1),
        True,
    )
    assert second.leader is None


def test_cli_up_three_brokers_status_shows_isr_and_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(REPO / "infrastructure" / "native")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "platform_native", *args, "--state-dir", str(state_dir)]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=400, check=False
        )

    up = cli("up", "--kafka-brokers", "3", "--topics", "alpha,beta")
    state = json.loads((state_dir / "state.json").read_text()) if up.returncode == 0 else {}
    pgids = [int(s["pgid"]) for s in state.get("servers", {}).values()]
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        nodes = [state["servers"][n] for n in ("kafka", "kafka-2", "kafka-3")]
        bootstraps = [n["addresses"]["bootstrap"] for n in nodes]
        assert state["env"]["KAFKA_BOOTSTRAP_SERVERS"] == ",".join(bootstraps)
        healthy = cli("status")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert "3/3 brokers up" in healthy.stdout and "0 under-replicated" in healthy.stdout
        os.killpg(int(nodes[2]["pgid"]), signal.SIGKILL)
        # The controller fences the dead broker after its session timeout (9 s).
        seen: list[subprocess.CompletedProcess[str]] = []

        def isr_shrunk() -> bool:
            seen.append(cli("status"))
            return " 0 under-replicated" not in seen[-1].stdout

        wait_for(isr_shrunk, 60, 1.0)
        degraded = seen[-1]
        assert degraded.returncode == 1
        assert "kafka-3      dead" in degraded.stdout, degraded.stdout
        assert "2/3 brokers up" in degraded.stdout, degraded.stdout
        assert " 0 under-replicated" not in degraded.stdout, degraded.stdout
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [pgid for pgid in pgids if group_members(pgid)]
    assert not (state_dir / "state.json").exists()


# ------------------------------------------------------------------ the faults


@pytest.mark.infra
def test_sigkill_of_the_partition_leader_loses_nothing(
    platform: Platform, cluster: KafkaCluster, architect: Installed
) -> None:
    # 250/s: the load lasts 40 s, so it still runs well after the kill even when a busy
    # machine makes the steps before the kill slow (at 500/s, once, it had ended).
    with service_under_load(platform, cluster, architect, "leader-kill", rate=250) as run:
        created = run.created_partitions
        victim = leader_of_most(created)
        led = sorted(p.partition for p in created if p.leader == victim)
        run.wait_results(1000)
        before = run.result_ends()
        cluster.node(victim).kill()
        killed = time.monotonic()
        left_at_kill = TOTAL - len(run.load.acked)
        # Resumed: every partition of the results topic, the dead leader's too, grows again.
        resumed = wait_for(
            lambda: all(run.result_ends().get(p, -1) > before[p] for p in before), 90, 0.2
        )
        took_over = sorted({p.leader or 0 for p in cluster.partitions(run.created)})
        counts = run.finish()
        same_process = alive(run.process)
    restarted = time.monotonic()
    cluster.start()
    isr_whole = cluster.wait_in_sync()
    passed = counts["lost"] == 0 and resumed is not None and same_process
    report.record(
        "kafka_cluster.leader_sigkill",
        f"Three brokers (replication 3, min.insync.replicas=2): the leader of most of the "
        f"service's result partitions SIGKILLed under a steady {TOTAL} requests; no "
        "acknowledged request lost, the service resumes on its own",
        passed,
        **counts,
        killed_broker=victim,
        result_partitions_it_led=led,
        leaders_after=took_over,
        requests_left_at_kill=left_at_kill,
        seconds_to_resume=None if resumed is None else round(resumed, 1),
        seconds_from_kill_to_restart=round(restarted - killed, 1),
        seconds_until_isr_whole_after_restart=round(isr_whole, 1),
        same_process=same_process,
    )
    assert counts["lost"] == 0, (counts, run.process.log_tail())
    assert left_at_kill > 0, "the load had ended before the kill: nothing to resume"
    assert resumed is not None, "a results partition did not grow within 90 s of the kill"
    assert same_process, run.process.log_tail()


@pytest.mark.report_only
def test_rolling_restart_of_all_three_brokers_loses_nothing(
    platform: Platform, cluster: KafkaCluster, architect: Installed
) -> None:
    with service_under_load(platform, cluster, architect, "rolling", rate=120) as run:
        run.wait_results(1000)
        per_broker = {}
        for node in cluster.nodes:
            began = time.monotonic()
            node.stop()  # SIGTERM: a controlled shutdown moves its leaders first
            node.start()
            cluster.wait_in_sync()
            per_broker[node.node_id] = round(time.monotonic() - began, 1)
        during = run.results()
        counts = run.finish()
        same_process = alive(run.process)
    passed = counts["lost"] == 0 and same_process
    report.record(
        "kafka_cluster.rolling_restart",
        f"Each of the three brokers restarted in turn (SIGTERM, start, ISR whole again) under "
        f"a steady {TOTAL} requests: no acknowledged request lost",
        passed,
        **counts,
        seconds_per_broker_until_isr_whole=per_broker,
        results_by_end_of_restarts=during,
        same_process=same_process,
    )
    assert counts["lost"] == 0, (counts, run.process.log_tail())
    assert same_process, run.process.log_tail()


@pytest.mark.report_only
def test_two_brokers_down_refuses_writes_reports_unready_and_loses_nothing(
    platform: Platform, cluster: KafkaCluster, architect: Installed
) -> None:
    with service_under_load(platform, cluster, architect, "two-down", rate=400) as run:
        run.wait_results(2000)
        for node in cluster.nodes[1:]:
            node.kill()
        down = time.monotonic()
        unready = wait_for(lambda: ready_status(run.process) == 503, 60)
        reason = httpx.get(f"{run.process.url}/health/ready", timeout=3).text if unready else ""
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
        # A second's grace: what was acknowledged just as the kill landed is genuine.
        acked_while_down = run.load.acked_between(down + 1.0, time.monotonic())
        refused_while_down = run.load.failed_sends
        cluster.start()
        back = time.monotonic()
        ready_again = wait_for(lambda: ready_status(run.process) == 200, 120)
        counts = run.finish()
        same_process = alive(run.process)
    passed = (
        counts["lost"] == 0
        and acked_while_down == 0
        and unready is not None
        and unready <= READINESS_BOUND_SECONDS
        and ready_again is not None
        and same_process
    )
    report.record(
        "kafka_cluster.two_brokers_down",
        f"Two of three brokers SIGKILLed for {OUTAGE_SECONDS:.0f} s under a steady {TOTAL} "
        "requests (ISR below min.insync.replicas=2): no write acknowledged while down, "
        f"/health/ready 503 within {READINESS_BOUND_SECONDS:.0f} s, everything arrives once "
        "they return",
        passed,
        **counts,
        acknowledged_while_down=acked_while_down,
        sends_refused_while_down=refused_while_down,
        seconds_to_503=None if unready is None else round(unready, 1),
        reason=reason,
        seconds_to_ready_after_return=None if ready_again is None else round(ready_again, 1),
        seconds_down=round(back - down, 1),
        same_process=same_process,
    )
    assert acked_while_down == 0, "a write was acknowledged with too few in-sync replicas"
    assert unready is not None and unready <= READINESS_BOUND_SECONDS, (unready, reason)
    assert ready_again is not None, run.process.log_tail()
    assert counts["lost"] == 0, (counts, run.process.log_tail())
    assert same_process, run.process.log_tail()


@pytest.mark.report_only
def test_a_frozen_broker_sigstop_sigcont_the_cluster_and_service_go_on(
    platform: Platform, cluster: KafkaCluster, architect: Installed
) -> None:
    with service_under_load(platform, cluster, architect, "frozen", rate=300) as run:
        run.wait_results(1500)
        victim = cluster.node(leader_of_most(run.created_partitions))
        assert victim.pid is not None
        run.frozen.add(victim.node_id)
        os.killpg(victim.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        at_freeze = run.results()
        try:
            # The cluster goes on without it: results keep coming while it is frozen.
            went_on = wait_for(lambda: run.results() > at_freeze + 500, OUTAGE_SECONDS * 3, 0.5)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - frozen)))
            during = run.results() - at_freeze
        finally:
            os.killpg(victim.pid, signal.SIGCONT)
            run.frozen.clear()
        thawed = time.monotonic()
        isr_whole = cluster.wait_in_sync()
        counts = run.finish()
        same_process = alive(run.process)
    passed = counts["lost"] == 0 and went_on is not None and same_process
    report.record(
        "kafka_cluster.broker_frozen",
        f"The leader of most result partitions frozen (SIGSTOP) for {OUTAGE_SECONDS:.0f} s, "
        f"then SIGCONT, under a steady {TOTAL} requests: results keep coming, the broker "
        "rejoins the ISR, no acknowledged request lost",
        passed,
        **counts,
        frozen_broker=victim.node_id,
        seconds_frozen=round(thawed - frozen, 1),
        seconds_until_500_more_results=None if went_on is None else round(went_on, 1),
        results_while_frozen=during,
        seconds_until_isr_whole_after_sigcont=round(isr_whole, 1),
        same_process=same_process,
    )
    assert went_on is not None, "no progress while one broker was frozen"
    assert counts["lost"] == 0, (counts, run.process.log_tail())
    assert same_process, run.process.log_tail()
