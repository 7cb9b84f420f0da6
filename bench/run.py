"""`make bench`: what the template's wiring costs, against bare baselines, side by side.

On the real loopback Kafka, Consul and Jaeger (platform_native), each repeat
runs the throughput variants one after the other on topics of their own, so
they share the machine's state, starting with a different variant each time
(so none is always the first or the last); then end-to-end latency, start-up,
memory and render time. Writes docs/benchmarks.json and docs/benchmarks.md.

Sizes come from the environment (the defaults are what `make bench` runs):
BENCH_MESSAGES (100000), BENCH_REPEATS (3), BENCH_RATE (200 req/s),
BENCH_SECONDS (30), BENCH_TRACING_OFF (1: also run the service with tracing
off, to show what span export costs). BENCH_OUTPUT moves the documents and
BENCH_SERVICES keeps the rendered, installed services in a directory to reuse
(both for the smoke test); by default each run renders and installs afresh.
BENCH_PROFILE=FILE samples the first service run with py-spy into FILE and
prints where the time went (bench/profile.py). bench/before.json holds the
figures measured before the template's hot path was optimised; they are shown
next to the current ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "infrastructure" / "native")]

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench.profile import summarise  # noqa: E402
from platform_native import servers  # noqa: E402
from platform_native.services import (  # noqa: E402
    ServiceInfo,
    ServiceProcess,
    install,
    wait_until_passing,
)
from tests.rendering import render, wheelhouse  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
RATE = int(os.environ.get("BENCH_RATE", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
TRACING_OFF = os.environ.get("BENCH_TRACING_OFF", "1") == "1"
SERVICES = os.environ.get("BENCH_SERVICES", "")  # reuse services rendered and installed there
PROFILE = os.environ.get("BENCH_PROFILE", "")  # py-spy's collapsed stacks of one service run
PARTITIONS = 3
AUDITOR = {
    "service_name": "value-auditor",
    "http_api": "no",
    "http_port": "8012",
    "consumes_topic": "value-model.created",
    "produces_topic": "value-model.audited",
}


def request_body(i: int) -> bytes:
    """A valid 1 KiB request event; `notes` is an extra field consumers ignore."""
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "company_name": f"company-{i:08d}-" + "c" * 150,
        "industry": "i" * 90,
    }
    padding = 1024 - len(json.dumps({**event, "notes": ""}))
    return json.dumps({**event, "notes": "n" * padding}).encode()


# ---------------------------------------------------------------- Kafka I/O


async def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, request_body(i), key=str(i).encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read(
    bootstrap: str,
    topic: str,
    count: int,
    timeout: float,
    on_record: Callable[[Any], None],
    done: Callable[[], bool] | None = None,
) -> int:
    """Read `topic` from the beginning until `count` records (or `done()`) or `timeout` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen = 0
    finished = done or (lambda: seen >= count)
    try:
        deadline = time.monotonic() + timeout
        while not finished() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    on_record(record)
                    seen += 1
        return seen
    finally:
        await consumer.stop()


def throughput_of(bootstrap: str, topic: str, count: int) -> float:
    """Results per second, from the broker's timestamps of the first and last result."""
    stamps: list[int] = []
    seen = asyncio.run(read(bootstrap, topic, count, 900, lambda r: stamps.append(r.timestamp)))
    if seen < count:
        raise RuntimeError(f"only {seen} of {count} results in {topic}")
    return (count - 1) / ((max(stamps) - min(stamps)) / 1000)


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakRss:
    """The highest RSS of a process, sampled every 0.2 s on a thread while in the block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------- the variants


class Bench:
    def __init__(
        self,
        kafka: servers.Kafka,
        consul: servers.Consul,
        jaeger: servers.Jaeger,
        workdir: Path,
        logs: Path,
    ) -> None:
        self.kafka, self.consul, self.jaeger, self.workdir = kafka, consul, jaeger, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.profiled = False
        if not (workdir / "value-architect").exists():  # BENCH_SERVICES may hold it already
            render(workdir)
        self.architect = ServiceInfo.read(workdir / "value-architect")
        self.script = install(self.architect.directory, wheels=wheelhouse())
        self.python = self.script.parent / "python"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "CONSUL_HTTP_ADDR": self.consul.http_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.jaeger.otlp_http,
            "OTEL_LOGS_EXPORTER": "none",  # Jaeger takes traces only
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    def topics(self, name: str) -> tuple[str, str, str]:
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        source, sink, dead = f"{prefix}.in", f"{prefix}.out", f"{prefix}.dead-letter"
        self.kafka.create_topics([source, sink, dead], partitions=PARTITIONS)
        asyncio.run(produce(self.kafka.bootstrap, source, MESSAGES))
        progress(f"{MESSAGES} requests in {source}")
        return source, sink, prefix

    def baseline(self, kind: str) -> dict[str, float]:
        source, sink, group = self.topics(kind)
        command = [
            str(self.python),
            str(REPO / "bench" / "baselines.py"),
            kind,
            self.kafka.bootstrap,
            source,
            sink,
            group,
            str(MESSAGES),
        ]
        process = subprocess.Popen(command)
        with PeakRss(process.pid) as rss:
            rate = throughput_of(self.kafka.bootstrap, sink, MESSAGES)
        if process.wait(60) != 0:
            raise RuntimeError(f"{kind} baseline exited with {process.returncode}")
        return {"msgs_per_s": rate, "rss_mib_load": rss.peak}

    def service(self, **extra: str) -> dict[str, float]:
        """The generated service as its real process, everything on unless `extra` says."""
        source, sink, group = self.topics("service")
        env = self.env(
            CONSUMES_TOPIC=source,
            PRODUCES_TOPIC=sink,
            DEAD_LETTER_TOPIC=f"{group}.dead-letter",
            CONSUMER_GROUP=group,
            SERVICE_INSTANCE_ID=group,
            **extra,
        )
        process = ServiceProcess(self.architect, self.script, env, self.logs / f"{group}.log")
        process.start()
        spy = self._profile(process.pid) if not extra else None
        try:
            with PeakRss(process.pid) as rss:
                rate = throughput_of(self.kafka.bootstrap, sink, MESSAGES)
        finally:
            process.terminate()
        if spy is not None:
            spy.wait(60)
            print(summarise(Path(PROFILE), 60), flush=True)
        return {"msgs_per_s": rate, "rss_mib_load": rss.peak}

    def _profile(self, pid: int) -> subprocess.Popen[bytes] | None:
        """With BENCH_PROFILE, py-spy samples the first service run into that file."""
        if not PROFILE or self.profiled:
            return None
        self.profiled = True
        py_spy = Path(sys.executable).parent / "py-spy"
        command = [str(py_spy), "record", "-f", "raw", "-r", "200", "-o", PROFILE, "-p", str(pid)]
        return subprocess.Popen(command)

    def latency_and_startup(self) -> dict[str, Any]:
        """POST to value-architect at RATE/s; latency until value-auditor has handled it."""
        directory = self.workdir / AUDITOR["service_name"]
        if not directory.exists():
            render(self.workdir, **AUDITOR)
        auditor = ServiceInfo.read(directory)
        topics = {t: PARTITIONS for info in (self.architect, auditor) for t in info.topics}
        self.kafka.create_topics(list(topics), partitions=PARTITIONS)
        processes = []
        startup = {}
        for info in (self.architect, auditor):
            started = time.perf_counter()
            process = ServiceProcess(
                info,
                install(info.directory, wheels=wheelhouse()),
                self.env(),
                self.logs / f"{info.name}.log",
            ).start()
            processes.append(process)
            wait_until_passing(self.consul.http_addr, info.name, process=process)
            startup[info.name] = time.perf_counter() - started
        try:
            time.sleep(2)
            idle = rss_mib(processes[0].pid)
            sent = asyncio.run(self._send(processes[0].url))
            received: dict[str, int] = {}
            asyncio.run(  # the topic holds earlier repeats too: read until all of these are in
                read(
                    self.kafka.bootstrap,
                    "value-model.audited",
                    len(sent),
                    120,
                    lambda r: received.__setitem__(r.key.decode(), r.timestamp),
                    done=lambda: all(key in received for key in sent),
                )
            )
        finally:
            for process in processes:
                process.terminate()
        latencies = sorted(received[key] - sent[key] for key in sent if key in received)
        return {
            "startup_s": startup["value-architect"],
            "rss_mib_idle": idle,
            "sent": len(sent),
            "received": len(latencies),
            "latencies_ms": latencies,
        }

    async def _send(self, url: str) -> dict[str, int]:
        sent: dict[str, int] = {}
        total = int(RATE * SECONDS)
        async with httpx.AsyncClient(timeout=10) as client:

            async def one(i: int) -> None:
                name = f"latency-{uuid.uuid4().hex}"
                stamp = time.time_ns() // 1_000_000
                body = {"company_name": name, "industry": "Bench"}
                response = await client.post(f"{url}/api/v1/value-models", json=body)
                if response.status_code == 202:
                    sent[name] = stamp

            began = time.perf_counter()
            tasks = []
            for i in range(total):
                await asyncio.sleep(max(0.0, began + i / RATE - time.perf_counter()))
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        return sent


# ----------------------------------------------------------------- reporting


def summary(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "runs": [round(v, 2) for v in values],
    }


def percentile(sorted_values: list[int], p: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))])


STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {what}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        kafka = servers.Kafka(workdir / "kafka")
        consul = servers.Consul(workdir / "consul")
        jaeger = servers.Jaeger(workdir / "jaeger")
        with servers.running(kafka, consul, jaeger):
            progress("servers running")
            services = Path(SERVICES) if SERVICES else workdir / "services"
            bench = Bench(kafka, consul, jaeger, services, workdir / "logs")
            runs: dict[str, list[dict[str, float]]] = {
                "service": [],
                "faststream": [],
                "aiokafka": [],
                "service_tracing_off": [],
            }
            variants: dict[str, Callable[[], dict[str, float]]] = {
                "aiokafka": lambda: bench.baseline("aiokafka"),
                "faststream": lambda: bench.baseline("faststream"),
                "service": bench.service,
            }
            if TRACING_OFF:  # what tracing costs
                variants["service_tracing_off"] = lambda: bench.service(OTEL_SDK_DISABLED="true")
            order = list(variants)
            for repeat in range(REPEATS):  # interleaved: every repeat runs every variant,
                for name in order[repeat:] + order[:repeat]:  # each repeat starting elsewhere
                    runs[name].append(variants[name]())
                progress(
                    f"repeat {repeat + 1}/{REPEATS}: "
                    + ", ".join(f"{k}={v[-1]['msgs_per_s']:.0f}/s" for k, v in runs.items() if v)
                )
            progress("throughput done")
            latency = [bench.latency_and_startup() for _ in range(REPEATS)]
            progress("latency done")
            renders = [_time_render(workdir / f"r{i}") for i in range(3)]
    runs = {k: v for k, v in runs.items() if v}
    ratios = [
        s["msgs_per_s"] / a["msgs_per_s"]
        for s, a in zip(runs["service"], runs["aiokafka"], strict=True)
    ]
    before_path = REPO / "bench" / "before.json"
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "messages_per_run": MESSAGES,
        "repeats": REPEATS,
        "throughput_ratio_vs_aiokafka": round(statistics.median(ratios), 3),
        "throughput_ratio_vs_aiokafka_runs": [round(r, 3) for r in ratios],
        "throughput_msgs_per_s": {
            k: summary([r["msgs_per_s"] for r in v]) for k, v in runs.items()
        },
        "rss_mib_under_load": {k: summary([r["rss_mib_load"] for r in v]) for k, v in runs.items()},
        "rss_mib_idle_service": summary([r["rss_mib_idle"] for r in latency]),
        "latency_ms": {
            f"p{p}": summary([percentile(r["latencies_ms"], p) for r in latency])
            for p in (50, 95, 99)
        },
        "latency_requests": {
            "rate_per_s": RATE,
            "seconds": SECONDS,
            "sent": [r["sent"] for r in latency],
            "received": [r["received"] for r in latency],
        },
        "startup_to_passing_s": summary([r["startup_s"] for r in latency]),
        "render_s": summary(renders),
        "before": json.loads(before_path.read_text()) if before_path.exists() else None,
    }
    docs = Path(os.environ.get("BENCH_OUTPUT", REPO / "docs"))
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    (docs / "benchmarks.md").write_text(markdown(result))
    print((docs / "benchmarks.md").read_text())
    return 0


def _time_render(directory: Path) -> float:
    started = time.perf_counter()
    render(directory)
    return time.perf_counter() - started


def markdown(r: dict[str, Any]) -> str:
    t, m = r["throughput_msgs_per_s"], r["rss_mib_under_load"]
    rows = [
        ("Throughput, generated service, everything on (msg/s)", t["service"]),
        ("Throughput, FastStream without middleware (msg/s)", t["faststream"]),
        ("Throughput, bare aiokafka loop (msg/s)", t["aiokafka"]),
    ]
    if "service_tracing_off" in t:
        off = t["service_tracing_off"]
        rows.append(("Throughput, generated service, tracing off (msg/s)", off))
    rows += [
        ("Latency p50, POST to second service handled (ms)", r["latency_ms"]["p50"]),
        ("Latency p95 (ms)", r["latency_ms"]["p95"]),
        ("Latency p99 (ms)", r["latency_ms"]["p99"]),
        ("Start-up, process start to passing in Consul (s)", r["startup_to_passing_s"]),
        ("RSS idle, generated service (MiB)", r["rss_mib_idle_service"]),
        ("RSS under load, generated service (MiB)", m["service"]),
        ("RSS under load, FastStream baseline (MiB)", m["faststream"]),
        ("RSS under load, aiokafka baseline (MiB)", m["aiokafka"]),
        ("Render one service (s)", r["render_s"]),
    ]
    load = r["latency_requests"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` at {r['measured_at']} on {r['cpus']} CPUs: "
        f"{r['messages_per_run']} messages",
        f"of 1 KiB per throughput run, {r['repeats']} repeats, the variants interleaved on the",
        "same loopback Kafka (Consul and Jaeger running too: the generated service sends",
        f"every span to Jaeger); latency at {load['rate_per_s']} requests/s for "
        f"{load['seconds']:.0f} s,",
        f"{sum(load['received'])} of {sum(load['sent'])} requests handled by the second service.",
        "",
        f"**Throughput ratio, generated service / bare aiokafka: "
        f"{r['throughput_ratio_vs_aiokafka']}** (median; runs "
        f"{r['throughput_ratio_vs_aiokafka_runs']}; goal 0.8).",
        "",
        "| Figure | min | median | runs |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {s['min']} | {s['median']} | {s['runs']} |" for name, s in rows]
    lines += ["", *NOTES]
    before = r.get("before")
    if before:
        bt = before["throughput_msgs_per_s"]
        lines += [
            "",
            "## Before the hot-path changes",
            "",
            before["note"],
            "",
            "| Figure | before | now (median) |",
            "|---|---|---|",
            f"| Ratio, service / aiokafka | {before['throughput_ratio_vs_aiokafka']} "
            f"| {r['throughput_ratio_vs_aiokafka']} |",
            f"| Generated service (msg/s) | {bt['service']} | {t['service']['median']} |",
            f"| FastStream baseline (msg/s) | {bt['faststream']} | {t['faststream']['median']} |",
            f"| aiokafka baseline (msg/s) | {bt['aiokafka']} | {t['aiokafka']['median']} |",
        ]
        lines += [
            f"| Latency {p} at {before['latency_rate_per_s']}/s (ms) | {before['latency_ms'][p]} "
            f"| {r['latency_ms'][p]['median']} |"
            for p in ("p50", "p95", "p99")
        ]
    return "\n".join(lines) + "\n"


NOTES = [
    "What the variants do: all three decode the 1 KiB JSON request, build the result, encode",
    "it and produce it to their own output topic, and commit an offset only once its result",
    "is acknowledged by Kafka. The generated service runs as its real process with tracing",
    "(OTLP to Jaeger), Prometheus metrics, pydantic validation and the dead-letter policy,",
    "consuming in batches (tracing and metrics once per batch, each message validated,",
    "handled and keyed on its own) and committing a batch once all its results are",
    "acknowledged; the FastStream baseline has the same batch subscribers and commit policy",
    "with no middleware, FastStream's JSON decoding and one `publish` per message; the aiokafka",
    "loop commits after each `getmany` batch.",
    "Throughput is taken from the broker timestamps of the first and last result.",
]


if __name__ == "__main__":
    sys.exit(main())
