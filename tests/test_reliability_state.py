"""A service that keeps state (database=postgres) under faults, against the real Kafka and
PostgreSQL: what its database committed is what reaches Kafka, once.

The ground truth is the database: the `requests` rows the service committed. The
events on Kafka are counted by their `event_id`; a request the API rolled back (a fault
injected after its outbox row was written) must leave no event.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from platform_native import servers
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .conftest import Platform
from .kafka_clients import create_topics, read_until
from .postgres_clients import psql
from .rendering import render, wheelhouse

pytestmark = pytest.mark.reliability

PARTITIONS = 3
KEYS = 5  # per writer thread
# Installed on the service's PYTHONPATH: a request named rollback-* fails after its row and
# its outbox row were written, so the transaction rolls back (the API answers 500); with
# FAULT_KILL_BEFORE_OFFSET_COMMIT the process dies at its first Kafka offset commit.
FAULTS = """\
import os
import signal

from event_chassis import outbox

_add = outbox.Outbox.add


async def _add_then_fail(self, session, topic, event, *, key=None):
    message_id = await _add(self, session, topic, event, key=key)
    if getattr(event, "company_name", "").startswith("rollback-"):
        raise RuntimeError("injected: the request fails after its writes")
    return message_id


outbox.Outbox.add = _add_then_fail

if os.environ.get("FAULT_KILL_BEFORE_OFFSET_COMMIT"):
    from event_chassis import partitions

    async def _die(self, offsets):  # after the batch's database commits, before Kafka's
        os.kill(os.getpid(), signal.SIGKILL)

    partitions.Partitions.commit = _die
"""


@dataclass
class Stateful:
    info: ServiceInfo
    script: Path
    root: Path
    faults: Path


@pytest.fixture(scope="module")
def stateful(tmp_path_factory: pytest.TempPathFactory) -> Stateful:
    root = tmp_path_factory.mktemp("reliability-state")
    info = ServiceInfo.read(render(root, database="postgres"))
    faults = root / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULTS)
    return Stateful(info, install(info.directory, wheels=wheelhouse()), root, faults)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Postgres]:
    server = servers.Postgres(tmp_path_factory.mktemp("postgres"))
    with servers.running(server):
        yield server


@dataclass
class Case:
    """One test's topics, database and service process."""

    platform: Platform
    stateful: Stateful
    postgres: servers.Postgres
    name: str
    dsn: str = ""
    process: ServiceProcess | None = None

    def __post_init__(self) -> None:
        prefix = f"state-{self.name}-{uuid.uuid4().hex[:6]}"
        self.topics = {
            "CONSUMES_TOPIC": f"{prefix}.requested",
            "PRODUCES_TOPIC": f"{prefix}.created",
            "DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
            "CONSUMER_GROUP": prefix,
        }
        topics = [v for k, v in self.topics.items() if k.endswith("_TOPIC")]
        create_topics(self.platform.kafka, topics, partitions=PARTITIONS)
        self.dsn = self.postgres.ensure_database(prefix)
        self.url_file = self.postgres.databases().url_file(prefix)

    def start(self, instance: str = "a", *, ready: bool = True, **extra: str) -> ServiceProcess:
        env = self.platform.service_env(
            SERVICE_INSTANCE_ID=f"{self.name}-{instance}",
            DATABASE_URL_FILE=str(self.url_file),
            DATABASE_CHECK_INTERVAL_SECONDS="1",
            PYTHONPATH=str(self.stateful.faults),
            OUTBOX_POLL_SECONDS="0.5",
            **self.topics,
            **extra,
        )
        log = self.stateful.root / f"{self.name}-{instance}-{uuid.uuid4().hex[:4]}.log"
        self.process = ServiceProcess(self.stateful.info, self.stateful.script, env, log).start()
        if ready:
            wait_ready(self.process)
        return self.process

    def drained(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while self.backlog() and time.monotonic() < deadline:
            time.sleep(0.5)

    def results(self) -> int:
        """Result events the handler wrote (one per message it handled, with its state)."""
        topic = self.topics["PRODUCES_TOPIC"]
        return int(
            self.sql(f"SELECT count(*) FROM event_outbox WHERE aggregatetype = '{topic}'")[0]
        )

    def inbox(self) -> int:
        return int(self.sql("SELECT count(*) FROM event_inbox")[0])

    def sql(self, query: str) -> list[str]:
        return [line for line in psql(self.dsn, query).stdout.splitlines() if line]

    def backlog(self) -> int:
        return int(self.sql("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")[0])

    def committed(self) -> set[str]:
        return set(self.sql("SELECT id FROM requests"))

    def events(self, expected: int) -> list[dict[str, object]]:
        bootstrap = self.platform.kafka.bootstrap
        topic = self.topics["CONSUMES_TOPIC"]
        records = read_until(bootstrap, topic, lambda rs: len(rs) >= expected, 60)
        return [json.loads(record.value) for record in records]


def wait_ready(process: ServiceProcess, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{process.url}/health/ready", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.process is not None and process.process.poll() is None, process.log_tail()
        assert time.monotonic() < deadline, f"not ready:\n{process.log_tail()}"
        time.sleep(0.2)


@dataclass
class Writer:
    """POSTs numbered requests at a steady rate from a few threads, each with keys of its own."""

    url: str
    per_second: float
    rollback_every: int = 0
    threads: int = 4
    answers: Counter[int] = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)  # the first few answers not 201, in full
    sent: int = 0

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.workers = [
            threading.Thread(target=self._run, args=(thread,), daemon=True)
            for thread in range(self.threads)
        ]
        self.prefix = uuid.uuid4().hex[:4]  # another writer's keys are not this one's
        self.started = self.stopped = 0.0

    def start(self) -> Writer:
        self.started = time.monotonic()
        for worker in self.workers:
            worker.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(30)
        self.stopped = self.stopped or time.monotonic()

    @property
    def posted(self) -> int:
        """Writes sent and answered (or refused): `sent` also counts one a stop cut short."""
        return sum(self.answers.values())

    @property
    def rate(self) -> float:
        """Writes a second achieved (the target is `per_second`)."""
        return self.posted / max((self.stopped or time.monotonic()) - self.started, 1e-9)

    def _next(self) -> int | None:
        with self.lock:
            number = self.sent
            due = self.started + number / self.per_second
            self.sent += 1
        pause = due - time.monotonic()
        if pause > 0 and self.stopping.wait(pause):
            return None
        return number

    def _run(self, thread: int) -> None:
        """Each thread writes keys of its own, one request after the other: a key's writes
        are ordered (each starts once the one before it was answered)."""
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set() and (number := self._next()) is not None:
                rollback = self.rollback_every and number % self.rollback_every == 0
                key = f"{self.prefix}-{thread}-{number % KEYS}"
                name = f"rollback-{number}" if rollback else key
                try:
                    body = {"company_name": name, "industry": str(number)}
                    answer = client.post(self.url, json=body)
                    status, said = answer.status_code, answer.text
                except httpx.HTTPError as error:
                    status, said = 0, repr(error)  # the service was away
                with self.lock:
                    self.answers[status] += 1
                    if status != 201 and len(self.refusals) < 5:
                        self.refusals.append(f"{time.strftime('%H:%M:%S')} {status} {said}")


def in_write_order(events: list[dict[str, object]]) -> bool:
    """Whether each key's events arrived in the order the key was written (its numbers
    rising), counting first arrivals: a re-sent record repeats what came before it."""
    numbers: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for event in events:
        if (event_id := str(event["event_id"])) not in seen:
            seen.add(event_id)
            numbers[str(event["company_name"])].append(int(str(event["industry"])))
    return all(sequence == sorted(sequence) for sequence in numbers.values())


def test_a_sigkill_between_commit_and_publish_loses_no_committed_event(
    platform: Platform, stateful: Stateful, postgres: servers.Postgres
) -> None:
    """Kafka stops while writes go on, the service is SIGKILLed with unpublished rows, then
    both come back: every committed request's event is published exactly once, and no
    rolled-back request has one."""
    case = Case(platform, stateful, postgres, "sigkill")
    process = case.start()
    writer = Writer(f"{process.url}/api/v1/value-models", 50, rollback_every=10).start()
    try:
        time.sleep(4)
        platform.kafka.kill()
        time.sleep(6)  # writes go on: the database has them, the outbox keeps them
        backlog_at_kill = case.backlog()
        process.kill()
        time.sleep(1)
        writer.stop()
    finally:
        writer.stop()
        platform.kafka.restart()
    process = case.start()
    try:
        deadline = time.monotonic() + 120
        while case.backlog() and time.monotonic() < deadline:
            time.sleep(0.5)
        committed = case.committed()
        events = case.events(len(committed))
    finally:
        process.terminate()
    published = Counter(str(event["event_id"]) for event in events)
    lost = len(committed - published.keys())
    twice = sum(n - 1 for n in published.values() if n > 1)
    uncommitted = len(published.keys() - committed)
    passed = lost == twice == uncommitted == 0 and backlog_at_kill > 0
    report.record(
        "state.sigkill_between_commit_and_publish",
        "Kafka stopped under writes, the service SIGKILLed with unpublished outbox rows, "
        "both restarted: every committed request's event published exactly once, none "
        "for a rolled-back request (counted by event id against the database)",
        passed=passed,
        writes=writer.posted,
        answers=dict(writer.answers),
        committed=len(committed),
        unpublished_at_the_kill=backlog_at_kill,
        lost=lost,
        published_twice=twice,
        published_but_not_committed=uncommitted,
    )
    assert passed, (lost, twice, uncommitted, backlog_at_kill)


def test_kafka_away_for_60s_under_200_writes_a_second(
    platform: Platform, stateful: Stateful, postgres: servers.Postgres
) -> None:
    """Every write succeeds while Kafka is away; the outbox grows, then drains in order."""
    case = Case(platform, stateful, postgres, "kafka-away")
    process = case.start()
    writer = Writer(f"{process.url}/api/v1/value-models", 200).start()
    peak = 0
    try:
        time.sleep(5)
        platform.kafka.kill()
        away = time.monotonic()
        while time.monotonic() - away < 60:
            time.sleep(5)
            peak = max(peak, case.backlog())
        platform.kafka.restart()
        back = time.monotonic()
        time.sleep(5)
        writer.stop()
        deadline = time.monotonic() + 180
        while case.backlog() and time.monotonic() < deadline:
            time.sleep(0.5)
        drained = time.monotonic() - back
        committed = case.committed()
        events = case.events(len(committed))
    finally:
        writer.stop()
        if not platform.kafka.is_running():
            platform.kafka.restart()
        process.terminate()
    published = Counter(str(event["event_id"]) for event in events)
    lost = len(committed - published.keys())
    ordered = in_write_order(events)
    failed = sum(n for status, n in writer.answers.items() if status != 201)
    passed = failed == 0 and lost == 0 and ordered and peak > 0
    report.record(
        "state.kafka_away_60s",
        "Kafka away for 60 s under writes paced at 200/s (the rate reached is a figure): "
        "every write answered 201, the outbox grew and drained, nothing lost, each key's "
        "events in the order it was written",
        passed=passed,
        writes=writer.posted,
        writes_per_second=round(writer.rate, 1),
        failed_writes=failed,
        backlog_peak=peak,
        seconds_to_drain_after_kafka_returned=round(drained, 1),
        lost=lost,
        duplicates=sum(n - 1 for n in published.values() if n > 1),
        in_order_per_key=ordered,
    )
    assert passed, (failed, lost, ordered, peak)


def test_two_replicas_keep_the_order_per_key_and_change_state_once(
    platform: Platform, stateful: Stateful, postgres: servers.Postgres
) -> None:
    """Two instances (two relays, two consumers of the group) under writes to both: the
    order per key holds; records both relays sent are counted; the handler's state change
    happens once per request however often its event is delivered."""
    case = Case(platform, stateful, postgres, "replicas")
    first, second = case.start("a"), case.start("b")
    writers = [
        Writer(f"{p.url}/api/v1/value-models", 50, threads=2).start() for p in (first, second)
    ]
    try:
        time.sleep(20)
    finally:
        for writer in writers:
            writer.stop()
    try:
        case.drained()
        committed = case.committed()
        events = case.events(len(committed))
        deadline = time.monotonic() + 60
        while case.results() < len(committed) and time.monotonic() < deadline:
            time.sleep(0.5)
        results = case.results()
    finally:
        first.terminate()
        second.terminate()
    published = Counter(str(event["event_id"]) for event in events)
    ordered = in_write_order(events)
    lost = len(committed - published.keys())
    passed = lost == 0 and ordered and results == len(committed)
    report.record(
        "state.two_replicas",
        "Two instances under writes to both: each key's events in the order it was written, "
        "nothing lost, the "
        "handler's state change once per request (the inbox), duplicates on the topic counted",
        passed=passed,
        writes=sum(w.posted for w in writers),
        committed=len(committed),
        lost=lost,
        duplicates_on_the_topic=sum(n - 1 for n in published.values() if n > 1),
        state_changes=results,
        in_order_per_key=ordered,
    )
    assert passed, (lost, ordered, results, len(committed))


def test_a_consumer_killed_after_its_database_commit_changes_nothing_twice(
    platform: Platform, stateful: Stateful, postgres: servers.Postgres
) -> None:
    """SIGKILL after the batch's database transactions committed and before its Kafka
    offsets did: the batch is delivered again and the inbox turns it away."""
    case = Case(platform, stateful, postgres, "consumer-kill")
    doomed = case.start("a", FAULT_KILL_BEFORE_OFFSET_COMMIT="1")
    writer = Writer(f"{doomed.url}/api/v1/value-models", 50, threads=1).start()
    try:
        deadline = time.monotonic() + 60
        while doomed.process is not None and doomed.process.poll() is None:
            status = (dict(writer.answers), case.backlog(), case.inbox())
            assert time.monotonic() < deadline, f"{status}\n{doomed.log_tail()}"
            time.sleep(0.2)
    finally:
        writer.stop()
        doomed.kill()
    handled_before = case.inbox()
    process = case.start("b")
    try:
        case.drained()
        committed = case.committed()
        deadline = time.monotonic() + 60
        while case.results() < len(committed) and time.monotonic() < deadline:
            time.sleep(0.5)
        results, inbox = case.results(), case.inbox()
    finally:
        process.terminate()
    passed = handled_before > 0 and results == inbox == len(committed)
    report.record(
        "state.consumer_sigkill_after_database_commit",
        "A consumer SIGKILLed after its database commit, before its offset commit: the "
        "redelivered messages change nothing (one state change and one result per request)",
        passed=passed,
        committed=len(committed),
        handled_before_the_kill=handled_before,
        state_changes=results,
        inbox_entries=inbox,
    )
    assert passed, (handled_before, results, inbox, len(committed))


def test_postgresql_restarted_under_load(
    platform: Platform, stateful: Stateful, postgres: servers.Postgres
) -> None:
    """PostgreSQL stopped for 3 s and started again under writes: readiness drops and
    recovers; writes meanwhile get 503; every committed request's event is published, and
    nothing is dead-lettered."""
    case = Case(platform, stateful, postgres, "pg-restart")
    process = case.start()
    writer = Writer(f"{process.url}/api/v1/value-models", 50, threads=2).start()
    seen: list[int] = []
    try:
        time.sleep(3)

        def restart() -> None:  # down for 3 s: longer than readiness's 1 s check
            postgres.stop()
            time.sleep(3)
            postgres.start()

        stopping = threading.Thread(target=restart)
        stopping.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (503 in seen and seen[-1] == 200):
            try:
                seen.append(httpx.get(f"{process.url}/health/ready", timeout=3).status_code)
            except httpx.HTTPError:
                seen.append(0)
            time.sleep(0.2)
        stopping.join(60)
        time.sleep(3)
    finally:
        writer.stop()
    try:
        case.drained()
        committed = case.committed()
        events = case.events(len(committed))
        dead = read_until(
            platform.kafka.bootstrap, case.topics["DEAD_LETTER_TOPIC"], lambda rs: False, 2
        )
        # What holds the relay back, should anything be lost: sessions and the service's log.
        sessions = case.sql(
            "SELECT pid, state, xact_start, backend_xmin, left(query, 60) FROM pg_stat_activity"
        )
    finally:
        process.terminate()
    published = {str(event["event_id"]) for event in events}
    lost = len(committed - published)
    recovered = 503 in seen and seen[-1] == 200
    # Writes the service refused while PostgreSQL was away: 503 with the reason, never a 500.
    refused_wrongly = writer.answers[500]
    passed = recovered and lost == 0 and not dead and refused_wrongly == 0
    report.record(
        "state.postgres_restart",
        "PostgreSQL restarted under writes: readiness drops and recovers, writes meanwhile "
        "get 503, every committed request's event published, nothing dead-lettered",
        passed=passed,
        writes=writer.posted,
        answers=dict(writer.answers),
        readiness_not_ready_checks=sum(1 for status in seen if status != 200),
        answered_500=refused_wrongly,
        committed=len(committed),
        lost=lost,
        dead_lettered=len(dead),
    )
    assert passed, (
        recovered,
        lost,
        len(dead),
        dict(writer.answers),
        seen[-5:],
        sessions,
        process.log_tail(120),
    )
