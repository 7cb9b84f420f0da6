"""`make bench`: what the chassis costs, against bare baselines with the same client settings.

On one loopback Kafka, Consul and Jaeger (platform_native), every repeat runs each
throughput variant once, on topics of its own, starting with a different variant
each time: the generated service (everything on, default trace sampling), the same
at 100 % sampling, FastStream without middleware and a bare aiokafka loop — all
with the client settings of `event_chassis.clients` (bench/baselines.py). Repeats
continue past BENCH_REPEATS while the aiokafka baseline's runs spread more than
±15 % (up to BENCH_MAX_REPEATS). Then latency through two services at two request
rates, for the generated services and for the same chain in bare aiokafka
(bench/chain.py); start-up; memory; render time; the service's image size
(bench/image.py). Writes docs/benchmarks.{json,md}
(BENCH_OUTPUT moves them), naming the commit and the chassis version.

Sizes (the defaults are what `make bench` runs): BENCH_MESSAGES (100000),
BENCH_REPEATS (3), BENCH_MAX_REPEATS (7), BENCH_RATE (200 req/s), BENCH_HIGH_RATE
(800 req/s), BENCH_SECONDS (30). BENCH_SERVICES keeps the rendered, installed
services in a directory to reuse (the smoke test does); BENCH_PROFILE=FILE samples
the first service run with py-spy (bench/profile.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "infrastructure"), str(REPO / "infrastructure" / "native")]

import httpx  # noqa: E402

from bench import image, report  # noqa: E402
from bench.measure import (  # noqa: E402
    PeakRss,
    percentile,
    produce,
    read,
    rss_mib,
    summary,
    throughput_of,
)
from bench.profile import summarise  # noqa: E402
from bench.provenance import chassis_release, commit  # noqa: E402
from platform_native import servers  # noqa: E402
from platform_native.processes import free_ports, stop_process_group  # noqa: E402
from platform_native.services import (  # noqa: E402
    ServiceInfo,
    ServiceProcess,
    install,
    wait_until_passing,
)
from tests.rendering import render, wheelhouse  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
MAX_REPEATS = int(os.environ.get("BENCH_MAX_REPEATS", "7"))
RATES = (int(os.environ.get("BENCH_RATE", "200")), int(os.environ.get("BENCH_HIGH_RATE", "800")))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
SPLIT_STEPS = tuple(report.STEPS)  # a request's way: POST, request, result, audit records
SERVICES = os.environ.get("BENCH_SERVICES", "")
PROFILE = os.environ.get("BENCH_PROFILE", "")
PARTITIONS = 3
STABLE_SPREAD = 0.30  # ±15 % around the median
PACKAGE = "value_architect"
AUDITOR = {
    "service_name": "value-auditor",
    "http_api": "no",
    "http_port": "8012",
    "consumes_topic": "value-model.created",
    "produces_topic": "value-model.audited",
}
FULL_SAMPLING = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {what}", flush=True)


class Bench:
    """The servers, the installed services, and one method per measurement."""

    def __init__(
        self,
        kafka: servers.Kafka,
        consul: servers.Consul,
        jaeger: servers.Jaeger,
        workdir: Path,
        logs: Path,
    ) -> None:
        self.kafka, self.consul, self.jaeger = kafka, consul, jaeger
        workdir.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.profiled = False
        self.services = {}
        for answers in ({}, AUDITOR):
            name = answers.get("service_name", "value-architect")
            if not (workdir / name).exists():  # BENCH_SERVICES may hold it already
                render(workdir, **answers)
            info = ServiceInfo.read(workdir / name)
            self.services[name] = (info, install(info.directory, wheels=wheelhouse()))
        self.architect, self.script = self.services["value-architect"]
        self.python = self.script.parent / "python"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "CONSUL_HTTP_ADDR": self.consul.http_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.jaeger.otlp_http,
            "OTEL_LOGS_EXPORTER": "none",  # Jaeger takes traces only
            **extra,
        }

    def client_settings(self) -> dict[str, Any]:
        command = [str(self.python), str(REPO / "bench" / "baselines.py"), "settings", PACKAGE]
        return dict(json.loads(subprocess.run(command, capture_output=True, check=True).stdout))

    def default_sampling(self) -> str:
        command = [str(self.python), str(REPO / "bench" / "baselines.py"), "sampling", PACKAGE]
        return subprocess.run(command, capture_output=True, check=True, text=True).stdout.strip()

    def topics(self, name: str) -> tuple[str, str, str]:
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        source, sink = f"{prefix}.in", f"{prefix}.out"
        self.kafka.create_topics([source, sink, f"{prefix}.dead-letter"], partitions=PARTITIONS)
        asyncio.run(produce(self.kafka.bootstrap, source, MESSAGES))
        return source, sink, prefix

    # -- throughput

    def baseline(self, kind: str) -> dict[str, float]:
        source, sink, group = self.topics(kind)
        script = str(REPO / "bench" / "baselines.py")
        arguments = [kind, PACKAGE, self.kafka.bootstrap, source, sink, group, str(MESSAGES)]
        process = subprocess.Popen([str(self.python), script, *arguments])
        with PeakRss(process.pid) as rss:
            figures = throughput_of(self.kafka.bootstrap, sink, MESSAGES, process.pid)
        if process.wait(60) != 0:
            raise RuntimeError(f"{kind} baseline exited with {process.returncode}")
        return {**figures, "rss_mib_load": rss.peak}

    def service(self, **extra: str) -> dict[str, float]:
        """The generated service as its real process, everything on."""
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
        spy = self._profile(process.pid)
        try:
            with PeakRss(process.pid) as rss:
                figures = throughput_of(self.kafka.bootstrap, sink, MESSAGES, process.pid)
        finally:
            process.terminate()
        if spy is not None:
            spy.wait(60)
            print(summarise(Path(PROFILE), 60), flush=True)
        return {**figures, "rss_mib_load": rss.peak}

    def _profile(self, pid: int) -> subprocess.Popen[bytes] | None:
        if not PROFILE or self.profiled:
            return None
        self.profiled = True
        py_spy = Path(sys.executable).parent / "py-spy"
        command = [str(py_spy), "record", "-f", "raw", "-r", "200", "-o", PROFILE, "-p", str(pid)]
        return subprocess.Popen(command)

    # -- latency

    def service_chain(self) -> tuple[list[ServiceProcess], str, list[str], dict[str, float]]:
        """value-architect and value-auditor, started; their URL, topics and start-up."""
        topics = {t: PARTITIONS for info, _ in self.services.values() for t in info.topics}
        self.kafka.create_topics(list(topics), partitions=PARTITIONS)
        processes, startup = [], {}
        for name, (info, script) in self.services.items():
            began = time.perf_counter()
            process = ServiceProcess(info, script, self.env(), self.logs / f"{name}.log").start()
            processes.append(process)
            wait_until_passing(self.consul.http_addr, name, process=process)
            startup[name] = time.perf_counter() - began
        hops = [f"value-model.{t}" for t in ("requested", "created", "audited")]
        return processes, processes[0].url, hops, startup

    def bare_chain(self) -> tuple[list[subprocess.Popen[bytes]], str, list[str]]:
        prefix = f"bench-chain-{uuid.uuid4().hex[:6]}"
        requested, created, audited = (f"{prefix}.{t}" for t in ("requested", "created", "audited"))
        self.kafka.create_topics([requested, created, audited], partitions=PARTITIONS)
        (port,) = free_ports(1)
        chain = [str(self.python), str(REPO / "bench" / "chain.py")]
        bootstrap = self.kafka.bootstrap
        first = [*chain, "first", PACKAGE, bootstrap, str(port), requested, created]
        second = [*chain, "second", PACKAGE, bootstrap, created, audited]
        processes = [  # process groups of their own, stopped like the services
            subprocess.Popen([*first, f"{prefix}-first"], start_new_session=True),
            subprocess.Popen([*second, f"{prefix}-second"], start_new_session=True),
        ]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        return processes, url, [requested, created, audited]

    def latency(self, kind: str, rate: int) -> dict[str, Any]:
        """POSTs at `rate`/s for SECONDS; ms from each POST until its audit is in Kafka.

        Also where the time goes, from the records' own timestamps (each set by its
        producer when it sends): POST to the request's record (HTTP and the produce
        call), request to result (the first consumer's fetch, handler and produce call),
        result to audit (the second's).
        """
        startup: dict[str, float] = {}
        if kind == "service":
            services, url, hops, startup = self.service_chain()
            processes = [service.process for service in services if service.process]
        else:
            processes, url, hops = self.bare_chain()
        idle = rss_mib(processes[0].pid)
        stamps: dict[str, dict[str, int]] = {topic: {} for topic in hops}
        try:
            time.sleep(2)  # every consumer in its group
            sent = asyncio.run(self._send(url, rate))
            for topic in reversed(hops):  # the audits first: they are the last to arrive
                asyncio.run(self._stamps(topic, set(sent), stamps[topic]))
        finally:
            for process in processes:  # SIGTERM, then SIGKILL after the grace: both alike
                stop_process_group(process.pid, timeout=30)
                process.wait()
        requested, created, audited = (stamps[topic] for topic in hops)
        latencies = sorted(float(audited[key] - sent[key]) for key in sent if key in audited)
        whole = [key for key in sent if key in audited and key in created and key in requested]
        way = (sent, requested, created, audited)
        split = {
            f"p{p}_{step}": percentile(sorted(float(end[key] - start[key]) for key in whole), p)
            for step, start, end in zip(SPLIT_STEPS, way[:-1], way[1:], strict=True)
            for p in (50, 99)
        }
        return {
            "sent": len(sent),
            "received": len(latencies),
            **{f"p{p}": percentile(latencies, p) for p in (50, 95, 99)},
            **{f"split_{step}": ms for step, ms in split.items()},
            "startup_s": startup.get("value-architect"),
            "rss_mib_idle": idle,
        }

    async def _stamps(self, topic: str, keys: set[str], into: dict[str, int]) -> None:
        """Each of `keys`' record timestamps in `topic`, into `into`."""

        def seen(record: Any) -> None:
            into[record.key.decode()] = record.timestamp

        await read(
            self.kafka.bootstrap, topic, len(keys), 120, seen, done=lambda: keys <= into.keys()
        )

    async def _send(self, url: str, rate: int) -> dict[str, int]:
        sent: dict[str, int] = {}
        total = int(rate * SECONDS)
        async with httpx.AsyncClient(timeout=10) as client:

            async def one() -> None:
                name = f"latency-{uuid.uuid4().hex}"
                stamp = time.time_ns() // 1_000_000
                body = {"company_name": name, "industry": "Bench"}
                response = await client.post(f"{url}/api/v1/value-models", json=body)
                if response.status_code == 202:
                    sent[name] = stamp

            began = time.perf_counter()
            tasks = []
            for i in range(total):
                await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        return sent


def throughput(bench: Bench) -> tuple[dict[str, list[dict[str, float]]], int]:
    variants: dict[str, Callable[[], dict[str, float]]] = {
        "aiokafka": lambda: bench.baseline("aiokafka"),
        "faststream": lambda: bench.baseline("faststream"),
        "service": bench.service,
        "service_full_sampling": lambda: bench.service(**FULL_SAMPLING),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    order = list(variants)
    repeat = 0
    while repeat < REPEATS or (
        summary([r["msgs_per_s"] for r in runs["aiokafka"]])["spread"] > STABLE_SPREAD
        and repeat < MAX_REPEATS
    ):
        start = repeat % len(order)  # interleaved, each repeat starting elsewhere
        for name in order[start:] + order[:start]:
            runs[name].append(variants[name]())
        repeat += 1
        progress(
            f"repeat {repeat}: "
            + ", ".join(f"{name}={values[-1]['msgs_per_s']:.0f}/s" for name, values in runs.items())
        )
    return runs, repeat


def provenance() -> dict[str, str]:
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "chassis_version": chassis_release(),
    }


def ratios(over: list[dict[str, float]], under: list[dict[str, float]], key: str) -> dict[str, Any]:
    """Repeat by repeat; a run too short for a figure (a CPU time under the clock's tick,
    in the smoke test) is left out."""
    found = [o[key] / u[key] for o, u in zip(over, under, strict=True) if u[key] and o[key]]
    return summary(found) if found else {"median": 0.0}


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
            settings = bench.client_settings()
            sampling = bench.default_sampling()
            runs, repeats = throughput(bench)
            progress("throughput done")
            latency: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for rate in RATES:
                latency[str(rate)] = {"service": [], "aiokafka": []}
                for _ in range(REPEATS):
                    for kind in ("service", "aiokafka"):
                        latency[str(rate)][kind].append(bench.latency(kind, rate))
                progress(f"latency at {rate}/s done")
            renders = [report.time_render(workdir / f"r{i}") for i in range(3)]
        progress("building the service's image")
        built = image.measure(bench.architect.directory)
    low = latency[str(RATES[0])]
    result = {
        **provenance(),
        "cpus": os.cpu_count(),
        "messages_per_run": MESSAGES,
        "repeats": repeats,
        "repeats_asked": REPEATS,
        "client_settings": settings,
        "default_trace_sampling": sampling,
        "throughput_msgs_per_s": {
            name: summary([r["msgs_per_s"] for r in values]) for name, values in runs.items()
        },
        "throughput_ratio": ratios(runs["service"], runs["aiokafka"], "msgs_per_s"),
        "throughput_ratio_vs_aiokafka": round(
            ratios(runs["service"], runs["aiokafka"], "msgs_per_s")["median"], 3
        ),
        "throughput_ratio_full_sampling_vs_aiokafka": round(
            ratios(runs["service_full_sampling"], runs["aiokafka"], "msgs_per_s")["median"], 3
        ),
        "cpu_ms_per_1000_messages": {
            name: summary([r["cpu_ms_per_1000"] for r in values]) for name, values in runs.items()
        },
        "cpu_ratio_vs_aiokafka": round(
            ratios(runs["service"], runs["aiokafka"], "cpu_ms_per_1000")["median"], 3
        ),
        "rss_mib_under_load": {
            name: summary([r["rss_mib_load"] for r in values]) for name, values in runs.items()
        },
        "latency": {
            rate: {
                kind: {f"p{p}_ms": summary([r[f"p{p}"] for r in values]) for p in (50, 95, 99)}
                | {"sent": [r["sent"] for r in values], "received": [r["received"] for r in values]}
                | {
                    f"p{p}_ms_{step}": summary([r[f"split_p{p}_{step}"] for r in values])
                    for step in SPLIT_STEPS
                    for p in (50, 99)
                }
                for kind, values in kinds.items()
            }
            for rate, kinds in latency.items()
        },
        "latency_rates_per_s": list(RATES),
        "latency_seconds": SECONDS,
        "latency_p50_ratio_vs_aiokafka": round(
            ratios(low["service"], low["aiokafka"], "p50")["median"], 3
        ),
        "latency_p99_ratio_vs_aiokafka": round(
            ratios(low["service"], low["aiokafka"], "p99")["median"], 3
        ),
        "startup_to_passing_s": summary(
            [r["startup_s"] for kinds in latency.values() for r in kinds["service"]]
        ),
        "rss_mib_idle_service": summary(
            [r["rss_mib_idle"] for kinds in latency.values() for r in kinds["service"]]
        ),
        "render_s": summary(renders),
        "image": built,
    }
    docs = Path(os.environ.get("BENCH_OUTPUT", REPO / "docs"))
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    (docs / "benchmarks.md").write_text(report.markdown(result))
    print((docs / "benchmarks.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
