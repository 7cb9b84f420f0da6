"""Messages: nothing lost under poison input, failing handlers, a Kafka crash and SIGTERM.

A generated value-architect runs as its own process (installed in its own
virtualenv, configured only through environment variables) against the real
Kafka, Consul and Jaeger. The tests produce and read with aiokafka, so every
figure they record comes from what the real broker holds.

Faults in the handler itself cannot be caused from outside, so the transient
and persistent handler errors (and slow work, for the SIGTERM test) are
injected through a `sitecustomize` module that this file writes and puts on
the service's PYTHONPATH: it wraps the team's `handlers.handle` to fail, or to
wait, for marked requests. Everything else in the process (the chassis, FastStream,
the Kafka clients) is unmodified.
"""

from __future__ import annotations

import asyncio
import json
import signal
import string
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from platform_native.services import ServiceInfo, ServiceProcess, install, wait_until_passing

from . import jaeger, report
from .conftest import Platform
from .kafka_clients import committed, create_topics, end_offsets, read_until
from .rendering import render, wheelhouse

pytestmark = pytest.mark.reliability

PARTITIONS = 3
MAX_EVENT_BYTES = 64 * 1024  # set through MAX_EVENT_BYTES; Kafka's own limit is ~1 MiB

FAULTS = '''\
"""Fault injection for tests/test_reliability_messages.py (on PYTHONPATH only there)."""

import asyncio
import functools

from value_architect import handlers

_real_handle = handlers.handle
_failures: dict[str, int] = {}


@functools.wraps(_real_handle)
async def _faulty_handle(event):
    """`broken-*` always fails; `flakyN-*` fails N times, then succeeds; `slow-*` takes
    0.2 s of (asynchronous) work, like a call to a slow dependency."""
    name = event.company_name
    if name.startswith("slow-"):
        await asyncio.sleep(0.2)
    if name.startswith("broken-"):
        raise RuntimeError(f"injected persistent failure for {name}")
    if name.startswith("flaky"):
        wanted = int(name[len("flaky")])
        seen = _failures.get(name, 0)
        if seen < wanted:
            _failures[name] = seen + 1
            raise TimeoutError(f"injected transient failure {seen + 1}/{wanted} for {name}")
    return await _real_handle(event)


handlers.handle = _faulty_handle
'''


# ---------------------------------------------------------------- the service


@dataclass
class Installed:
    info: ServiceInfo
    script: Path
    root: Path
    faults: Path


@pytest.fixture(scope="module")
def architect(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """value-architect rendered with the default answers and installed once."""
    root = tmp_path_factory.mktemp("reliability-messages")
    info = ServiceInfo.read(render(root))
    faults = root / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULTS)
    return Installed(info, install(info.directory, wheels=wheelhouse()), root, faults)


@dataclass
class Topics:
    requested: str
    created: str
    dead_letter: str
    group: str

    def env(self) -> dict[str, str]:
        return {
            "CONSUMES_TOPIC": self.requested,
            "PRODUCES_TOPIC": self.created,
            "DEAD_LETTER_TOPIC": self.dead_letter,
            "CONSUMER_GROUP": self.group,
        }


def fresh_topics(platform: Platform, name: str) -> Topics:
    """Topics and a consumer group of this test's own, so tests do not see each other's data."""
    prefix = f"reliability-{name}-{uuid.uuid4().hex[:6]}"
    topics = Topics(f"{prefix}.requested", f"{prefix}.created", f"{prefix}.dead-letter", prefix)
    create_topics(
        platform.kafka,
        [topics.requested, topics.created, topics.dead_letter],
        partitions=PARTITIONS,
    )
    return topics


def start(
    platform: Platform,
    architect: Installed,
    name: str,
    env: dict[str, str] | None = None,
    *,
    faults: bool = False,
) -> ServiceProcess:
    extra = {"SERVICE_INSTANCE_ID": name, **(env or {})}
    if faults:
        extra["PYTHONPATH"] = str(architect.faults)
    process = ServiceProcess(
        architect.info,
        architect.script,
        platform.service_env(**extra),
        architect.root / f"{name}.log",
    ).start()
    wait_ready(process)
    return process


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait_ready(process: ServiceProcess, timeout: float = 60.0) -> float:
    """Wait until /health/ready answers 200; returns the seconds it took."""
    started = time.monotonic()
    while http_status(f"{process.url}/health/ready") != 200:
        assert process.process is not None
        if process.process.poll() is not None:
            raise AssertionError(f"service exited:\n{process.log_tail()}")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"service not ready after {timeout}s:\n{process.log_tail()}")
        time.sleep(0.2)
    return time.monotonic() - started


def alive(process: ServiceProcess) -> bool:
    return process.process is not None and process.process.poll() is None


# ----------------------------------------------------------------- Kafka I/O


@dataclass
class Sent:
    key: bytes
    value: bytes | None
    partition: int
    offset: int
    timestamp: float  # seconds


def produce(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes | None]],
    partition_of: Callable[[int], int | None] = lambda index: None,
    headers_of: Callable[[int], list[tuple[str, bytes]]] = lambda index: [],
) -> list[Sent]:
    """Produce (key, value) pairs; returns where each one landed."""

    async def run() -> list[Sent]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2 * 1024 * 1024
        )
        await producer.start()
        try:
            futures = [
                await producer.send(
                    topic,
                    value,
                    key=key,
                    partition=partition_of(index),
                    headers=headers_of(index) or None,
                )
                for index, (key, value) in enumerate(messages)
            ]
            metadata = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return [
            Sent(key, value, meta.partition, meta.offset, meta.timestamp / 1000)
            for (key, value), meta in zip(messages, metadata, strict=True)
        ]

    return asyncio.run(run())


def count_created(bootstrap: str, topic: str) -> int:
    """The created events so far; -1 while Kafka cannot say within 5 s (a count that waits
    out aiokafka's 40 s request timeout would eat a test's whole window)."""
    try:
        return sum(end_offsets(bootstrap, topic, timeout=5).values())
    except Exception:  # Kafka down or starting: nothing to count right now
        return -1


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def request(name: str, industry: str = "Testing") -> bytes:
    return json.dumps({"company_name": name, "industry": industry}).encode()


def source_keys(records: list[ConsumerRecord[bytes, bytes]]) -> Counter[bytes]:
    """How often each request key appears among the created events (keyed by company name)."""
    return Counter(record.key for record in records if record.key is not None)


# ------------------------------------------------------- 1. poison messages

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
NOT_A_STRING = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.integers())
NAME_CHARS = string.ascii_letters + string.digits + "éüßçø"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# Every strategy here yields payloads that can never be valid requests.
BAD_PAYLOADS: dict[str, st.SearchStrategy[bytes | None]] = {
    "binary": st.binary(max_size=64).map(lambda raw: b"\xff\xfe" + raw),
    "not_json": st.text(max_size=80).map(lambda text: ("not json: " + text).encode()),
    "empty": st.sampled_from([b"", None]),  # an empty value and a tombstone
    "json_not_object": st.one_of(JSON_SCALARS, st.lists(JSON_VALUES, max_size=5)).map(_json),
    "wrong_schema": st.dictionaries(
        st.text(max_size=12).filter(lambda key: key not in {"company_name", "industry"}),
        JSON_VALUES,
        max_size=5,
    ).map(_json),
    "wrong_types": st.builds(
        lambda name, industry, swap: _json(
            {"company_name": industry, "industry": name}
            if swap
            else {"company_name": name, "industry": industry}
        ),
        NOT_A_STRING,
        st.text(NAME_CHARS, min_size=1, max_size=20),
        st.booleans(),
    ),
    "wrong_version": st.integers()
    .filter(lambda v: v != 1)
    .map(lambda version: _json({"schema_version": version, "company_name": "A", "industry": "B"})),
    "too_long_field": st.integers(201, 400).map(
        lambda size: _json({"company_name": "x" * size, "industry": "B"})
    ),
    "oversized": st.integers(MAX_EVENT_BYTES + 1, MAX_EVENT_BYTES + 40_000).map(
        lambda size: _json({"company_name": "A", "industry": "B", "padding": "p" * size})
    ),
}


@dataclass
class Message:
    kind: str  # "good", "binary_header" or one of BAD_PAYLOADS
    value: bytes | None = None
    industry: str = ""
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def bad_message(kind: str) -> st.SearchStrategy[Message]:
    if kind == "binary_header":  # a valid request with a header that is not UTF-8
        return st.binary(max_size=16).map(
            lambda raw: Message(kind, request("A"), headers=[("x-raw", b"\xff" + raw)])
        )
    return BAD_PAYLOADS[kind].map(lambda value: Message(kind, value))


@st.composite
def batches(draw: st.DrawFn) -> list[Message]:
    """At least 100 bad payloads of every kind, mixed in random order with good ones."""
    bad = draw(
        st.lists(
            st.sampled_from(sorted([*BAD_PAYLOADS, "binary_header"])).flatmap(bad_message),
            min_size=100,
            max_size=140,
        )
    )
    good = draw(
        st.lists(
            st.text(NAME_CHARS + " -&", min_size=1, max_size=100)
            .filter(lambda industry: industry.strip() != "")
            .map(lambda industry: Message("good", industry=industry)),
            min_size=20,
            max_size=60,
        )
    )
    mixed = bad + good
    order = draw(st.permutations(range(len(mixed))))
    return [mixed[index] for index in order]


@dataclass
class PoisonStats:
    examples: int = 0
    bad_sent: Counter[str] = field(default_factory=Counter)
    bad_dead_lettered: int = 0
    good_sent: int = 0
    good_processed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def test_poison_messages_are_dead_lettered_and_the_consumer_goes_on(
    platform: Platform, architect: Installed
) -> None:
    """Hypothesis batches on the real value-model.requested topic, one service process."""
    info = architect.info
    create_topics(platform.kafka, info.topics, partitions=info.partitions)
    requested, created, dead_letter = info.topics
    group = "value-architect"
    bootstrap = platform.kafka.bootstrap
    process = start(platform, architect, "poison", {"MAX_EVENT_BYTES": str(MAX_EVENT_BYTES)})
    stats = PoisonStats()
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()

    @settings(
        max_examples=5,
        deadline=None,
        database=None,
        # Shrinking would replay hundreds of messages through the real service per
        # step; a failing example is reported in full instead.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=batches())
    def check(batch: list[Message]) -> None:
        stats.examples += 1
        prefix = f"{run}-{stats.examples}-"
        messages: list[tuple[bytes, bytes | None]] = []
        for index, message in enumerate(batch):
            key = f"{prefix}{index}".encode()
            value = message.value
            if message.kind == "good":
                value = request(key.decode(), message.industry)
            messages.append((key, value))
        sent = produce(
            bootstrap, requested, messages, headers_of=lambda index: batch[index].headers
        )
        bad = {s.key: (m, s) for m, s in zip(batch, sent, strict=True) if m.kind != "good"}
        good = {s.key for m, s in zip(batch, sent, strict=True) if m.kind == "good"}
        stats.bad_sent.update(m.kind for m, _ in bad.values())
        stats.good_sent += len(good)

        def mine(records: list[ConsumerRecord[bytes, bytes]]) -> dict[bytes, Any]:
            return {r.key: r for r in records if r.key and r.key.startswith(prefix.encode())}

        dead = mine(read_until(bootstrap, dead_letter, lambda rs: len(mine(rs)) >= len(bad), 90))
        done = mine(read_until(bootstrap, created, lambda rs: len(mine(rs)) >= len(good), 30))
        stats.bad_dead_lettered += len(dead.keys() & bad.keys())
        stats.good_processed += len(done.keys() & good)

        problems = []
        for key, (message, where) in bad.items():
            record = dead.get(key)
            if record is None:
                problems.append(f"{message.kind} {message.value!r:.80} not dead-lettered")
                continue
            headers = {name: value.decode() for name, value in record.headers}
            stats.errors[headers.get("x-dead-letter-error", "?")] += 1
            expected = {
                "x-original-topic": requested,
                "x-original-partition": str(where.partition),
                "x-original-offset": str(where.offset),
                "x-original-consumer-group": group,
            }
            wrong = {k: headers.get(k) for k, v in expected.items() if headers.get(k) != v}
            if wrong or not headers.get("x-dead-letter-error"):
                problems.append(f"{message.kind}: headers {headers} differ in {wrong}")
            if (record.value or b"") != (message.value or b""):
                problems.append(f"{message.kind}: dead-lettered body differs")
        problems += [f"good {key!r} not processed" for key in good - done.keys()]
        problems += [f"good {key!r} dead-lettered" for key in good & dead.keys()]
        if not alive(process):
            problems.append(f"service died:\n{process.log_tail()}")
        stats.problems += problems
        assert not problems, "\n".join(problems[:20])

    failure: BaseException | None = None
    try:
        check()
    except BaseException as error:  # recorded below, then raised again
        failure = error
    ends = end_offsets(bootstrap, requested)
    commits = committed(bootstrap, group, requested)
    uncommitted = sum(ends[p] - commits[p] for p in ends)
    still_alive = alive(process)
    process.terminate()
    bad_sent = sum(stats.bad_sent.values())
    passed = (
        failure is None
        and still_alive
        and uncommitted == 0
        and bad_sent >= 500
        and stats.bad_dead_lettered == bad_sent
        and stats.good_processed == stats.good_sent
    )
    report.record(
        "messages.poison_property",
        "Hypothesis batches of poison payloads (not JSON, binary, empty/tombstone, wrong "
        "schema, wrong types, oversized) mixed with good requests on the real topic: every "
        "bad one dead-lettered with error/topic/partition/offset headers, every good one "
        "processed, offsets committed, the process never dies",
        passed=passed,
        hypothesis_examples=stats.examples,
        bad_sent=bad_sent,
        bad_dead_lettered=stats.bad_dead_lettered,
        bad_by_kind=dict(sorted(stats.bad_sent.items())),
        dead_letter_errors=dict(sorted(stats.errors.items())),
        good_sent=stats.good_sent,
        good_processed=stats.good_processed,
        uncommitted_offsets=uncommitted,
        crashes=0 if still_alive else 1,
        seconds=round(time.monotonic() - started, 1),
    )
    if failure is not None:
        raise failure
    assert still_alive, process.log_tail()
    assert bad_sent >= 500
    assert stats.bad_dead_lettered == bad_sent
    assert stats.good_processed == stats.good_sent
    assert uncommitted == 0, (ends, commits)


# --------------------------------------------- 2. transient handler errors


def test_transient_errors_are_retried_with_backoff_without_blocking_other_partitions(
    platform: Platform, architect: Installed
) -> None:
    topics = fresh_topics(platform, "transient")
    bootstrap = platform.kafka.bootstrap
    retries, backoff = 3, 0.2
    env = {"HANDLER_MAX_RETRIES": str(retries), "HANDLER_RETRY_BACKOFF_SECONDS": str(backoff)}
    process = start(platform, architect, "transient", env | topics.env(), faults=True)
    try:
        # Partition 0: requests that always fail, and ones that fail once, twice, three
        # times. Partitions 1 and 2: steady traffic while partition 0 is retrying.
        faulty = [f"broken-{i}" for i in range(3)] + [f"flaky{n}-{n}" for n in (1, 2, 3)]
        sent_faulty = produce(
            bootstrap,
            topics.requested,
            [(name.encode(), request(name)) for name in faulty],
            lambda index: 0,
        )
        steady: list[Sent] = []
        for batch in range(40):
            names = [f"steady-{batch}-{p}" for p in (1, 2)]
            steady += produce(
                bootstrap,
                topics.requested,
                [(name.encode(), request(name)) for name in names],
                lambda index: index + 1,
            )
            time.sleep(0.1)
        want_created = {s.key for s in steady} | {f"flaky{n}-{n}".encode() for n in (1, 2, 3)}
        broken = {f"broken-{i}".encode() for i in range(3)}

        def created_keys(rs: list[ConsumerRecord[bytes, bytes]]) -> bool:
            return want_created <= {r.key for r in rs}

        created = read_until(bootstrap, topics.created, created_keys, 60)
        dead = read_until(
            bootstrap, topics.dead_letter, lambda rs: broken <= {r.key for r in rs}, 60
        )
    finally:
        still_alive = alive(process)
        process.terminate()

    # Each broken request fails 1 + retries times, flakyN fails N times; each failure
    # but a broken request's last is logged as a retry by the dead-letter middleware.
    retries_logged = process.log_path.read_text(errors="replace").count("Handler failed")
    retries_expected = len(broken) * retries + sum((1, 2, 3))
    created_at = {r.key: r.timestamp / 1000 for r in created}
    dead_by_key = {r.key: r for r in dead}
    sent_at = {s.key: s.timestamp for s in sent_faulty + steady}
    steady_latency = [created_at[s.key] - s.timestamp for s in steady if s.key in created_at]
    attempts = {
        key.decode(): dict(record.headers).get("x-dead-letter-attempts", b"?").decode()
        for key, record in dead_by_key.items()
    }
    # The schedule the policy promises: backoff * 2**(n-1) per retry (capped at 5 s).
    schedule = sum(min(backoff * 2**n, 5.0) for n in range(retries))
    # Partition 0 retries its broken messages one after the other: each waits for the last.
    dead_at = sorted(dead_by_key[k].timestamp / 1000 for k in broken if k in dead_by_key)
    first_sent = min(sent_at[k] for k in broken)
    broken_spent = [b - a for a, b in zip([first_sent, *dead_at], dead_at, strict=False)]
    flaky_processed = sum(f"flaky{n}-{n}".encode() in created_at for n in (1, 2, 3))
    lost = len(want_created - created_at.keys()) + len(broken - dead_by_key.keys())
    max_steady = max(steady_latency, default=float("inf"))
    passed = (
        still_alive
        and lost == 0
        and set(attempts.values()) == {str(retries + 1)}
        and not (dead_by_key.keys() - broken)
        and retries_logged == retries_expected
        and max_steady < schedule / 2
        and all(schedule <= spent < schedule + 1.0 for spent in broken_spent)
    )
    report.record(
        "messages.transient_retry",
        "Handler errors (injected into the real process) are retried with capped exponential "
        "backoff, then dead-lettered; requests that fail fewer times than the retry limit "
        "succeed; a message being retried does not hold up the other partitions",
        passed=passed,
        max_retries=retries,
        backoff_schedule_seconds=round(schedule, 2),
        persistent_failures_dead_lettered=len(broken & dead_by_key.keys()),
        dead_letter_attempts=sorted(set(attempts.values())),
        seconds_per_dead_letter=[round(spent, 2) for spent in broken_spent],
        flaky_processed=flaky_processed,
        retries=retries_logged,
        other_partitions_messages=len(steady),
        other_partitions_max_latency_ms=round(max_steady * 1000),
        other_partitions_median_latency_ms=round(
            sorted(steady_latency)[len(steady_latency) // 2] * 1000 if steady_latency else -1
        ),
        lost=lost,
    )
    assert still_alive, process.log_tail()
    assert lost == 0, (want_created - created_at.keys(), broken - dead_by_key.keys())
    assert set(attempts.values()) == {str(retries + 1)}, attempts
    assert not (dead_by_key.keys() - broken), "a message that could succeed was dead-lettered"
    assert retries_logged == retries_expected
    assert all(schedule <= spent < schedule + 1.0 for spent in broken_spent), broken_spent
    assert max_steady < schedule / 2, f"other partitions waited {max_steady:.2f}s"


# ------------------------------------------------ 3. Kafka killed mid-stream

TOTAL = 10_000


def test_kafka_sigkill_mid_stream_loses_nothing(platform: Platform, architect: Installed) -> None:
    topics = fresh_topics(platform, "kafka-kill")
    bootstrap = platform.kafka.bootstrap
    process = start(platform, architect, "kafka-kill", topics.env())
    keys = [f"kill-{i}".encode() for i in range(TOTAL)]
    produce(bootstrap, topics.requested, [(key, request(key.decode())) for key in keys])
    started = time.monotonic()
    killed_at_processed = -1
    down_seconds = resume_seconds = 0.0
    resumed = False
    try:
        assert wait_for(lambda: count_created(bootstrap, topics.created) >= TOTAL // 4, 120), (
            process.log_tail()
        )
        killed_at_processed = count_created(bootstrap, topics.created)
        platform.kafka.kill()
        down = time.monotonic()
        time.sleep(3)
        platform.kafka.restart()
        down_seconds = time.monotonic() - down
        back = time.monotonic()
        # Nothing can be produced while Kafka is away: the first result past the count at
        # the kill is the service resuming (it may finish the rest within a second).
        resumed = wait_for(
            lambda: count_created(bootstrap, topics.created) > killed_at_processed, 60
        )
        resume_seconds = time.monotonic() - back
        pid_before = process.pid
        records = read_until(
            bootstrap, topics.created, lambda rs: len(source_keys(rs)) >= TOTAL, 180
        )
        recovered = wait_for(lambda: http_status(f"{process.url}/health/ready") == 200, 30)
        same_process = alive(process) and process.pid == pid_before
    finally:
        if not platform.kafka.is_running():
            platform.kafka.restart()
        process.terminate()
    seen = source_keys(records)
    lost = len(set(keys) - seen.keys())
    duplicates = sum(count - 1 for count in seen.values())
    dead = read_until(bootstrap, topics.dead_letter, lambda rs: False, 2)
    passed = lost == 0 and same_process and resumed and recovered and not dead
    report.record(
        "messages.kafka_sigkill",
        f"Kafka SIGKILLed while the service works through {TOTAL} messages, restarted on "
        "the same data: every message processed at least once, none dead-lettered, the "
        "service recovers on its own (same process)",
        passed=passed,
        messages=TOTAL,
        processed_when_killed=killed_at_processed,
        kafka_down_seconds=round(down_seconds, 1),
        seconds_to_resume_after_restart=round(resume_seconds, 1),
        lost=lost,
        duplicates=duplicates,
        dead_lettered=len(dead),
        same_process=same_process,
        ready_again=recovered,
        seconds=round(time.monotonic() - started, 1),
    )
    assert same_process, process.log_tail()
    assert lost == 0, f"{lost} lost\n{process.log_tail()}"
    assert not dead, [(r.key, r.headers) for r in dead[:5]]
    figures = f"{killed_at_processed} of {TOTAL} processed at the kill, down {down_seconds:.1f} s"
    assert killed_at_processed < TOTAL, f"the service was done before the kill ({figures})"
    assert resumed, f"no result within 60 s of Kafka's restart ({figures})"
    assert recovered


# --------------------------------------------------------- 4. SIGTERM under load

SIGTERM_TOTAL = 2000
WORKERS = 3  # the template's CONSUMER_WORKERS default for 3 partitions
SIGTERM_BATCH = 20  # CONSUMER_BATCH_SIZE here: a batch in flight takes about 0.4 s


def catalog_ids(platform: Platform, name: str) -> set[str]:
    url = f"{platform.consul.http_url}/v1/catalog/service/{name}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return {entry["ServiceID"] for entry in json.load(response)}


def trace_has_process_span(platform: Platform, trace_id: str, instance: str, topic: str) -> bool:
    trace = jaeger.trace(platform.jaeger.query_url, trace_id)
    if not trace:
        return False
    processes = trace["processes"]
    for span in trace["spans"]:
        tags = {t["key"]: t["value"] for t in processes[span["processID"]]["tags"]}
        if (
            span["operationName"] == f"process {topic}"
            and tags.get("service.instance.id") == instance
        ):
            return True
    return False


def test_sigterm_under_load_drains_commits_deregisters_and_hands_over(
    platform: Platform, architect: Installed
) -> None:
    topics = fresh_topics(platform, "sigterm")
    bootstrap = platform.kafka.bootstrap
    name = architect.info.name
    grace = float(platform.service_env()["SHUTDOWN_GRACE_SECONDS"])
    # One request in ten takes 0.2 s, so work is in flight when SIGTERM comes.
    keys = [(f"slow-{i}" if i % 10 == 0 else f"term-{i}").encode() for i in range(SIGTERM_TOTAL)]
    produce(bootstrap, topics.requested, [(key, request(key.decode())) for key in keys])
    batches = {"CONSUMER_BATCH_SIZE": str(SIGTERM_BATCH)}
    first = start(platform, architect, "sigterm-a", batches | topics.env(), faults=True)
    second: ServiceProcess | None = None
    try:
        wait_until_passing(platform.consul.http_addr, name, process=first)
        service_id = f"{name}-sigterm-a"
        assert service_id in catalog_ids(platform, name)
        assert wait_for(lambda: count_created(bootstrap, topics.created) >= SIGTERM_TOTAL // 4, 120)
        assert first.process is not None
        sigterm_at = time.time()
        first.process.send_signal(signal.SIGTERM)
        exit_code = first.process.wait(grace + 10)
        stop_seconds = time.time() - sigterm_at
        deregistered = service_id not in catalog_ids(platform, name)
        log = first.log_path.read_text(errors="replace")
        commits = committed(bootstrap, topics.group, topics.requested)
        processed_by_first = read_until(
            bootstrap, topics.created, lambda rs: False, 3
        )  # everything the first instance produced
        # Spans: the last events the first instance handled have their spans in Jaeger,
        # flushed at shut-down (the batch processor would otherwise hold them).
        last = sorted(processed_by_first, key=lambda r: r.timestamp)[-20:]
        trace_ids = [
            dict(r.headers)["traceparent"].decode().split("-")[1]
            for r in last
            if "traceparent" in dict(r.headers)
        ]
        flushed = sum(
            wait_for(
                partial(trace_has_process_span, platform, t, "sigterm-a", topics.requested), 10, 0.5
            )
            for t in trace_ids
        )

        second = start(platform, architect, "sigterm-b", batches | topics.env(), faults=True)
        records = read_until(
            bootstrap, topics.created, lambda rs: len(source_keys(rs)) >= SIGTERM_TOTAL, 120
        )
    finally:
        first.terminate()
        if second is not None:
            second.terminate()
    request_offsets = {}
    for record in read_until(bootstrap, topics.requested, lambda rs: len(rs) >= SIGTERM_TOTAL, 30):
        request_offsets[record.key] = (record.partition, record.offset)
    first_keys = source_keys(processed_by_first)
    seen = source_keys(records)
    second_keys = seen - first_keys
    after_sigterm = sum(1 for r in processed_by_first if r.timestamp / 1000 > sigterm_at)
    lost = len(set(keys) - seen.keys())
    duplicates = sum(count - 1 for count in seen.values())
    # The second instance starts exactly at the first one's committed offsets.
    second_start: dict[int, int] = {}
    for key in second_keys:
        partition, offset = request_offsets[key]
        second_start[partition] = min(second_start.get(partition, offset), offset)
    committed_by_first = sum(max(offset, 0) for offset in commits.values())
    hands_over = all(second_start.get(p, commits[p]) == commits[p] for p in commits)
    passed = (
        exit_code in (0, -signal.SIGTERM)
        and stop_seconds < grace
        and after_sigterm <= WORKERS * SIGTERM_BATCH
        and "Application shutdown complete" in log
        and deregistered
        and committed_by_first == len(first_keys)
        and lost == 0
        and duplicates == 0
        and hands_over
        and trace_ids != []
        and flushed == len(trace_ids)
    )
    report.record(
        "messages.sigterm_under_load",
        "SIGTERM while consuming: the instance stops fetching at once, finishes only what is "
        "in flight (at most one batch per consumer) within the grace period, commits, "
        "deregisters from Consul and flushes its spans; the next instance of the group "
        "starts at the committed offsets; no message lost or handled twice (each consumer "
        "finishes and commits its batch before a rebalance moves its partitions)",
        passed=passed,
        messages=SIGTERM_TOTAL,
        grace_seconds=grace,
        stop_seconds=round(stop_seconds, 2),
        exit_code=exit_code,
        processed_by_first=len(first_keys),
        consumers=WORKERS,
        batch_size=SIGTERM_BATCH,
        finished_after_sigterm=after_sigterm,
        committed_by_first=committed_by_first,
        deregistered=deregistered,
        last_spans_in_jaeger=f"{flushed}/{len(trace_ids)}",
        second_starts_at_commit=hands_over,
        lost=lost,
        duplicates=duplicates,
    )
    assert exit_code in (0, -signal.SIGTERM), log[-3000:]
    assert stop_seconds < grace
    assert after_sigterm <= WORKERS * SIGTERM_BATCH, f"{after_sigterm} finished after SIGTERM"
    assert "Application shutdown complete" in log
    assert deregistered
    assert committed_by_first == len(first_keys), (commits, len(first_keys))
    assert hands_over, (second_start, commits)
    assert lost == 0
    assert duplicates == 0, f"{duplicates} messages handled twice"
    assert trace_ids and flushed == len(trace_ids), f"{flushed}/{len(trace_ids)} traces in Jaeger"


@pytest.fixture(autouse=True)
def _kafka_running(platform: Platform) -> Iterator[None]:
    """Every test here starts and ends with Kafka up (one of them kills it)."""
    if not platform.kafka.is_running():
        platform.kafka.restart()
    yield
    if not platform.kafka.is_running():
        platform.kafka.restart()
