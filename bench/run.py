"""`make bench`: what the chassis costs, against bare baselines with the same client settings.

On loopback Kafka, Consul, Jaeger, VictoriaLogs, the OpenTelemetry Collector and
PostgreSQL (platform_native), in one run:

- Throughput (bench/baselines.py): every repeat runs each variant once, on a results
  topic of its own, starting with a different variant each time: the generated
  service with everything on (traces at the default sampling and logs, both exported
  through the collector), the same without log export, the same at 100 % sampling,
  FastStream without middleware, and two bare aiokafka loops, one calling `send()` per
  result and one using the batch API as the chassis does (the client's limit, which
  the headline ratio is measured against). Each run counts SECONDS of steady state
  after WARMUP s from its first result. Repeats continue past BENCH_REPEATS while the
  headline ratio's runs spread more than ±10 % (up to BENCH_MAX_REPEATS).
- Latency (bench/latency.py, load from vegeta in its own process, bench/loadgen.py):
  through two services at BENCH_RATE requests/s, the generated services against the
  same chain in bare aiokafka (bench/chain.py), each start warmed up first (reported
  apart); then both chains' load curves up to saturation, their knees, and
  docs/latency-curve.svg; then a py-spy profile of each chain's HTTP process at
  BENCH_RATE (bench/profile.py).
- The write path (bench/writes.py): a `database=postgres` service against a bare dual
  write (bench/dualwrite.py).
- Start-up, memory, render time, the service's image (bench/image.py).

Writes docs/benchmarks.{json,md} and docs/latency-curve.svg (BENCH_OUTPUT moves
them), naming the commit and the chassis version. Sizes (the defaults are what
`make bench` runs): BENCH_MESSAGES (500000 requests in the shared source topic, topped
up when a variant could drain it), BENCH_SECONDS (10), BENCH_WARMUP (5),
BENCH_REPEATS (5), BENCH_MAX_REPEATS (7), BENCH_RATE (200), BENCH_LATENCY_SECONDS
(15), BENCH_CURVE_RATES (200,400,800,1600), BENCH_CURVE_SECONDS (10),
BENCH_CURVE_CEILING (12800), BENCH_WRITE_REPEATS (3), BENCH_WRITE_SECONDS (10),
BENCH_WRITE_WORKERS (32), BENCH_PROFILE_SECONDS (15), BENCH_SETTLE_SECONDS (120, the
longest wait for the broker's clean-up after throughput). BENCH_SERVICES keeps the
rendered, installed services in a directory to reuse (the smoke test does);
BENCH_PROFILE=FILE also samples the first throughput run of the service with py-spy
(BENCH_PROFILE_VARIANT=service_full_sampling: of that variant instead).
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "infrastructure"), str(REPO / "infrastructure" / "native")]

from bench import figures, image, latency, report  # noqa: E402
from bench.latency import Chain  # noqa: E402
from bench.measure import (  # noqa: E402
    PeakRss,
    create_topics,
    delete_topics,
    produce,
    rss_mib,
    settle,
    steady_throughput,
)
from bench.profile import summarise  # noqa: E402
from bench.writes import VARIANTS as WRITE_VARIANTS  # noqa: E402
from bench.writes import WritePath, wait_for  # noqa: E402
from platform_native import servers  # noqa: E402
from platform_native.processes import free_ports, stop_process_group  # noqa: E402
from platform_native.services import (  # noqa: E402
    ServiceInfo,
    ServiceProcess,
    install,
    wait_until_passing,
)
from tests.rendering import render, wheelhouse  # noqa: E402


def setting(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default)


MESSAGES = int(setting("MESSAGES", "500000"))
SECONDS = float(setting("SECONDS", "10"))
WARMUP = float(setting("WARMUP", "5"))
REPEATS = int(setting("REPEATS", "5"))
MAX_REPEATS = int(setting("MAX_REPEATS", "7"))
RATE = int(setting("RATE", "200"))
LATENCY_SECONDS = float(setting("LATENCY_SECONDS", "15"))
CURVE_RATES = [int(rate) for rate in setting("CURVE_RATES", "200,400,800,1600").split(",")]
CURVE_SECONDS = float(setting("CURVE_SECONDS", "10"))
CURVE_CEILING = int(setting("CURVE_CEILING", "12800"))
WRITE_REPEATS = int(setting("WRITE_REPEATS", "3"))
WRITE_SECONDS = float(setting("WRITE_SECONDS", "10"))
WRITE_WORKERS = int(setting("WRITE_WORKERS", "32"))
PROFILE_SECONDS = float(setting("PROFILE_SECONDS", "15"))
SETTLE_SECONDS = float(setting("SETTLE_SECONDS", "120"))
SERVICES = setting("SERVICES", "")
PROFILE = setting("PROFILE", "")
PROFILE_VARIANT = setting("PROFILE_VARIANT", "service")
IMAGE = setting("IMAGE", "1") == "1"  # 0: no image (the smoke test; tests/test_images.py builds it)
PARTITIONS = 3
PACKAGE = "value_architect"
AUDITOR = {
    "service_name": "value-auditor",
    "http_api": "no",
    "http_port": "8012",
    "consumes_topic": "value-model.created",
    "produces_topic": "value-model.audited",
}
FULL_SAMPLING = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
NO_LOG_EXPORT = {"OTEL_LOGS_EXPORTER": "none"}
STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {what}", flush=True)


class Bench:
    """The servers, the installed services, and one method per measurement."""

    def __init__(self, platform: dict[str, Any], workdir: Path, logs: Path) -> None:
        self.kafka: servers.Kafka = platform["kafka"]
        self.consul: servers.Consul = platform["consul"]
        self.collector: servers.OtelCollector = platform["collector"]
        self.postgres: servers.Postgres = platform["postgres"]
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
        stateful = workdir / "stateful"
        if not (stateful / "value-architect").exists():
            stateful.mkdir(parents=True, exist_ok=True)
            render(stateful, database="postgres")
        self.stateful = ServiceInfo.read(stateful / "value-architect")
        self.stateful_script = install(self.stateful.directory, wheels=wheelhouse())
        self.source, self.source_size, self.fastest = "", 0, 0.0

    def env(self, **extra: str) -> dict[str, str]:
        """Everything on: traces and logs to the collector, which passes them on."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "CONSUL_HTTP_ADDR": self.consul.http_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.collector.otlp_http,
            **extra,
        }

    def helper(self, kind: str) -> str:
        command = [str(self.python), str(REPO / "bench" / "baselines.py"), kind, PACKAGE]
        return subprocess.run(command, capture_output=True, check=True, text=True).stdout.strip()

    # -- throughput

    def fill_source(self) -> None:
        """One source topic for every run (each reads it from the start in a group of its
        own), long enough that the fastest variant seen cannot drain it in a run."""
        if not self.source:
            self.source = f"bench-source-{uuid.uuid4().hex[:6]}"
            asyncio.run(create_topics(self.kafka.bootstrap, [self.source], PARTITIONS))
        needed = max(MESSAGES, int(self.fastest * (WARMUP + SECONDS + 5) * 1.5))
        if needed > self.source_size:
            asyncio.run(
                produce(
                    self.kafka.bootstrap, self.source, needed - self.source_size, self.source_size
                )
            )
            self.source_size = needed

    def variant(self, name: str) -> dict[str, float]:
        """One throughput run, again with a longer source should it have drained this one."""
        for _ in range(4):
            self.fill_source()
            figures = self._run(name)
            self.fastest = max(self.fastest, figures["msgs_per_s"], figures["warmup_msgs_per_s"])
            if figures.pop("results_at_close") < 0.99 * self.source_size:
                return figures
            progress(f"{name} drained the source: again on one twice as long")
            self.fastest = max(self.fastest, 2 * self.source_size / ((WARMUP + SECONDS + 5) * 1.5))
        raise RuntimeError(f"{name} drained a source of {self.source_size} requests")

    def _run(self, name: str) -> dict[str, float]:
        group = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        sink, dead = f"{group}.out", f"{group}.dead-letter"
        asyncio.run(create_topics(self.kafka.bootstrap, [sink, dead], PARTITIONS))
        stop, pid, alive = self._start(name, sink, dead, group)
        try:
            with PeakRss(pid) as rss:
                run = steady_throughput(
                    self.kafka.bootstrap, sink, pid, alive, WARMUP, SECONDS, PARTITIONS
                )
                figures = asyncio.run(run)
        finally:
            stop()
            asyncio.run(delete_topics(self.kafka.bootstrap, [sink, dead]))
        return {**figures, "rss_mib_load": rss.peak}

    def _start(
        self, name: str, sink: str, dead: str, group: str
    ) -> tuple[Callable[[], object], int, Callable[[], bool]]:
        if not name.startswith("service"):
            script = str(REPO / "bench" / "baselines.py")
            arguments = [name, PACKAGE, self.kafka.bootstrap, self.source, sink, group]
            process = subprocess.Popen([str(self.python), script, *arguments])

            def stop() -> None:
                process.terminate()
                process.wait(60)

            return stop, process.pid, lambda: process.poll() is None
        extra = {"service": {}, "service_full_sampling": FULL_SAMPLING}.get(name, NO_LOG_EXPORT)
        env = self.env(
            CONSUMES_TOPIC=self.source,
            PRODUCES_TOPIC=sink,
            DEAD_LETTER_TOPIC=dead,
            CONSUMER_GROUP=group,
            SERVICE_INSTANCE_ID=group,
            **extra,
        )
        service = ServiceProcess(self.architect, self.script, env, self.logs / f"{group}.log")
        service.start()
        spy = self.sample(service.pid) if name == PROFILE_VARIANT else None

        def stop_service() -> None:
            service.terminate()
            if spy is not None:
                spy.wait(60)
                print(summarise(Path(PROFILE), 60), flush=True)

        alive = service.process
        assert alive is not None
        return stop_service, service.pid, lambda: alive.poll() is None

    def sample(self, pid: int, out: str = "", seconds: float = 0) -> subprocess.Popen[bytes] | None:
        if not out and (not PROFILE or self.profiled):
            return None
        self.profiled = self.profiled or not out
        py_spy = Path(sys.executable).parent / "py-spy"
        command = [str(py_spy), "record", "-f", "raw", "-r", "100", "-o", out or PROFILE]
        command += ["-p", str(pid), *(["-d", str(int(seconds))] if seconds else [])]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- latency

    def service_chain(self) -> tuple[Callable[[], None], Chain, int, float]:
        """value-architect and value-auditor, started: a stop, the chain, its HTTP pid,
        and the architect's start-up to passing in Consul."""
        topics = {t for info, _ in self.services.values() for t in info.topics}
        asyncio.run(create_topics(self.kafka.bootstrap, sorted(topics), PARTITIONS))
        processes, startup = [], 0.0
        for name, (info, script) in self.services.items():
            began = time.perf_counter()
            process = ServiceProcess(info, script, self.env(), self.logs / f"{name}.log").start()
            processes.append(process)
            wait_until_passing(self.consul.http_addr, name, process=process)
            startup = startup or time.perf_counter() - began

        def stop() -> None:
            for process in processes:
                process.terminate()

        hops = [f"value-model.{t}" for t in ("requested", "created", "audited")]
        url = f"{processes[0].url}/api/v1/value-models"
        return stop, Chain(url, self.kafka.bootstrap, hops), processes[0].pid, startup

    def bare_chain(self) -> tuple[Callable[[], None], Chain, int, float]:
        prefix = f"bench-chain-{uuid.uuid4().hex[:6]}"
        hops = [f"{prefix}.{t}" for t in ("requested", "created", "audited")]
        asyncio.run(create_topics(self.kafka.bootstrap, hops, PARTITIONS))
        (port,) = free_ports(1)
        chain = [str(self.python), str(REPO / "bench" / "chain.py")]
        bootstrap = self.kafka.bootstrap
        first = [*chain, "first", PACKAGE, bootstrap, str(port), hops[0], hops[1]]
        second = [*chain, "second", PACKAGE, bootstrap, hops[1], hops[2]]
        processes = [  # process groups of their own, stopped like the services
            subprocess.Popen([*first, f"{prefix}-first"], start_new_session=True),
            subprocess.Popen([*second, f"{prefix}-second"], start_new_session=True),
        ]
        url = f"http://127.0.0.1:{port}"

        def stop() -> None:
            for process in processes:  # SIGTERM, then SIGKILL after the grace
                stop_process_group(process.pid, timeout=30)
                process.wait()

        try:
            wait_for(url, lambda status: status == 404, lambda: "")
        except BaseException:
            stop()
            raise
        time.sleep(2)  # the second's consumers in their group
        return stop, Chain(f"{url}/api/v1/value-models", bootstrap, hops), processes[0].pid, 0.0

    def chain(self, kind: str) -> tuple[Callable[[], None], Chain, int, float]:
        return self.service_chain() if kind == "service" else self.bare_chain()

    def latency(self, kind: str) -> dict[str, Any]:
        """One start of a chain: warmed up at RATE (reported apart), then measured at RATE."""
        stop, chain, pid, startup = self.chain(kind)
        idle = rss_mib(pid)
        work = self.logs / "load"
        try:
            warm = latency.run(chain, RATE, WARMUP, work) if WARMUP else {}
            measured = latency.run(chain, RATE, LATENCY_SECONDS, work)
        finally:
            stop()
        return {
            **measured,
            "warmup_p99": warm.get("p99"),
            "startup_s": startup,
            "rss_mib_idle": idle,
        }

    def curve(self, kind: str) -> list[dict[str, Any]]:
        stop, chain, _, _ = self.chain(kind)
        work = self.logs / "load"
        try:
            if WARMUP:
                latency.run(chain, CURVE_RATES[0], WARMUP, work)
            return latency.curve(chain, CURVE_RATES, CURVE_SECONDS, work, CURVE_CEILING)
        finally:
            stop()

    def http_profile(self, kind: str) -> dict[str, Any]:
        """py-spy on the chain's HTTP process while it takes RATE requests/s."""
        stop, chain, pid, _ = self.chain(kind)
        out = self.logs / f"profile-{kind}.txt"
        work = self.logs / "load"
        try:
            if WARMUP:
                latency.run(chain, RATE, WARMUP, work)
            spy = self.sample(pid, str(out), PROFILE_SECONDS)
            measured = latency.run(chain, RATE, PROFILE_SECONDS, work)
            if spy is not None:
                spy.wait(60)
        finally:
            stop()
        return {"p99_while_profiled": measured.get("p99"), **figures.profile(out)}


def throughput(bench: Bench) -> tuple[dict[str, list[dict[str, float]]], int]:
    names = [
        "aiokafka_batch",
        "aiokafka",
        "faststream",
        "service",
        "service_no_log_export",
        "service_full_sampling",
    ]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    repeat = 0
    while repeat < REPEATS or (
        figures.ratio(runs, "service", "aiokafka_batch")["spread"] > figures.STABLE_SPREAD
        and repeat < MAX_REPEATS
    ):
        start = repeat % len(names)  # interleaved, each repeat starting elsewhere
        for name in names[start:] + names[:start]:
            runs[name].append(bench.variant(name))
        repeat += 1
        progress(
            f"repeat {repeat}: "
            + ", ".join(f"{name}={values[-1]['msgs_per_s']:.0f}/s" for name, values in runs.items())
        )
    return runs, repeat


def latencies(bench: Bench) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """REPEATS starts of each chain, alternating which goes first, after one uncounted
    start of each: the broker's warm-up on this low-rate path. Whichever chain went first
    was its slowest start for 10-20 s of load, and the other chain's next start was not
    (most likely the broker's JIT: the throughput runs take other code paths)."""
    runs: dict[str, list[dict[str, Any]]] = {"service": [], "aiokafka": []}
    first = {kind: bench.latency(kind) for kind in ("service", "aiokafka")}
    progress(
        "broker warm-up starts: "
        + ", ".join(f"{k} p99={v.get('p99')} ms" for k, v in first.items())
    )
    for repeat in range(REPEATS):
        for kind in ("service", "aiokafka")[:: 1 if repeat % 2 == 0 else -1]:
            runs[kind].append(bench.latency(kind))
        progress(
            f"latency repeat {repeat + 1}: "
            + ", ".join(
                f"{kind} p99={runs[kind][-1].get('p99')} ms" for kind in ("service", "aiokafka")
            )
        )
    return runs, first


def write_path(bench: Bench) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    path = WritePath(
        bench.kafka,
        bench.postgres,
        bench.stateful,
        bench.stateful_script,
        bench.env,
        bench.logs,
        PARTITIONS,
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in WRITE_VARIANTS}
    for repeat in range(WRITE_REPEATS):
        for name in WRITE_VARIANTS[:: 1 if repeat % 2 == 0 else -1]:
            runs[name].append(path.run(name, RATE, WRITE_SECONDS, WARMUP, WRITE_WORKERS))
        progress(
            f"write path repeat {repeat + 1}: "
            + ", ".join(
                f"{name} p99={values[-1].get('p99')} ms, max {values[-1]['max_events_per_s']}/s"
                for name, values in runs.items()
            )
        )
    out = bench.logs / "profile-write-path.txt"

    def spy(pid: int) -> Callable[[], None]:
        sampler = bench.sample(pid, str(out), PROFILE_SECONDS)

        def done() -> None:
            if sampler is not None:
                sampler.wait(60)

        return done

    profiled = path.profiled(RATE, PROFILE_SECONDS, WARMUP, spy)
    return runs, {**profiled, **figures.profile(out)}


def main() -> int:
    docs = Path(os.environ.get("BENCH_OUTPUT", REPO / "docs"))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        kafka = servers.Kafka(workdir / "kafka")
        consul = servers.Consul(workdir / "consul")
        jaeger = servers.Jaeger(workdir / "jaeger")
        logs = servers.VictoriaLogs(workdir / "victorialogs")
        collector = servers.OtelCollector(
            workdir / "otelcol", jaeger=jaeger, logs_endpoint=logs.otlp_endpoint
        )
        postgres = servers.Postgres(workdir / "postgres")
        with servers.running(kafka, consul, jaeger, logs, collector, postgres):
            progress("servers running")
            services = Path(SERVICES) if SERVICES else workdir / "services"
            platform = {"kafka": kafka, "consul": consul, "collector": collector}
            bench = Bench(platform | {"postgres": postgres}, services, workdir / "logs")
            settings = json.loads(bench.helper("settings"))
            sampling = bench.helper("sampling")
            progress("services installed")
            runs, repeats = throughput(bench)
            settled = settle(kafka.data_dir, SETTLE_SECONDS)
            progress(f"throughput done; then {settled}")
            lat, first_starts = latencies(bench)
            progress(f"latency at {RATE}/s done")
            curves = {kind: bench.curve(kind) for kind in ("service", "aiokafka")}
            progress("load curves done")
            profiles = {kind: bench.http_profile(kind) for kind in ("service", "aiokafka")}
            progress("profiles done")
            writes, write_profile = write_path(bench)
            progress("write path done")
            renders = [report.time_render(workdir / f"r{i}") for i in range(3)]
        if IMAGE:
            progress("building the service's image")
            built = image.measure(bench.architect.directory)
        else:
            built = {"not_measured": "BENCH_IMAGE=0"}
    knees = {kind: latency.knee(points) for kind, points in curves.items()}
    docs.mkdir(parents=True, exist_ok=True)
    latency.plot(
        {report.CHAINS[kind]: points for kind, points in curves.items()},
        {report.CHAINS[kind]: knee for kind, knee in knees.items()},
        docs / "latency-curve.svg",
    )
    result = figures.assemble(
        sizes={
            "repeats": repeats,
            "repeats_asked": REPEATS,
            "steady_seconds": SECONDS,
            "warmup_seconds": WARMUP,
            "latency_rate_per_s": RATE,
            "latency_seconds": LATENCY_SECONDS,
            "curve_seconds": CURVE_SECONDS,
            "write_seconds": WRITE_SECONDS,
            "write_workers": WRITE_WORKERS,
            "settled_after_throughput": settled,
            "latency_first_starts": first_starts,
        },
        settings=settings,
        sampling=sampling,
        runs=runs,
        lat=lat,
        curves=curves,
        knees=knees,
        profiles=profiles | {"write_path_service": write_profile},
        writes=writes,
        renders=renders,
        built=built,
    )
    (docs / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    (docs / "benchmarks.md").write_text(report.markdown(result))
    print((docs / "benchmarks.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
