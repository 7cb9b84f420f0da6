"""The write path (issue 23): an HTTP write until its event is in Kafka.

Side by side, each repeat starting with the other: the generated service with
`database=postgres` (the row and an outbox row in one transaction, 201, then its
relay publishes the event; its consumer also handles the request, as the service
always does) and the bare dual write (bench/dualwrite.py: an asyncpg insert, then an
aiokafka send). Latency at a steady open-loop rate runs from when the request was
due until the event's broker timestamp (LogAppendTime); the maximum is the events
that reached Kafka while a closed loop of `workers` requests wrote as fast as it
could, per second of the loop. Each variant has its own database on one throwaway
PostgreSQL, and topics of its own per run.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.latency import broker_stamps
from bench.loadgen import attack
from bench.measure import create_topics, percentile
from platform_native import servers
from platform_native.processes import free_ports, stop_process_group
from platform_native.services import ServiceInfo, ServiceProcess

VARIANTS = ("service", "dual_write")


@dataclass
class WritePath:
    kafka: servers.Kafka
    postgres: servers.Postgres
    info: ServiceInfo  # the stateful service, installed
    script: Path
    env: Callable[..., dict[str, str]]
    logs: Path
    partitions: int

    def run(
        self, variant: str, rate: int, seconds: float, warmup: float, workers: int
    ) -> dict[str, Any]:
        """One variant: started, warmed up (reported apart), at `rate`, then at its maximum."""
        stop, url, topic, _ = self._start(variant)
        work = self.logs / "load"
        try:
            warm = self._latency(url, topic, rate, warmup, work) if warmup else {}
            steady = self._latency(url, topic, rate, seconds, work)
            most = self._maximum(url, topic, seconds, workers, work)
        finally:
            stop()
        return {**steady, "warmup_p99": warm.get("p99"), **most}

    def profiled(
        self, rate: int, seconds: float, warmup: float, spy: Callable[[int], Callable[[], None]]
    ) -> dict[str, Any]:
        """The service warmed up, then at `rate` while `spy(pid)` samples it (`spy`
        returns what waits for the sampler's end)."""
        stop, url, topic, pid = self._start("service")
        work = self.logs / "load"
        try:
            if warmup:
                self._latency(url, topic, rate, warmup, work)
            done = spy(pid)
            measured = self._latency(url, topic, rate, seconds, work)
            done()
        finally:
            stop()
        return {"p99_while_profiled": measured.get("p99")}

    def _start(self, variant: str) -> tuple[Callable[[], None], str, str, int]:
        """The variant, running on topics of its own: its stop, URL, event topic and pid."""
        prefix = f"bench-write-{variant}-{uuid.uuid4().hex[:6]}"
        topic = f"{prefix}.requested"
        topics = [topic, f"{prefix}.created", f"{prefix}.dead-letter"]
        asyncio.run(create_topics(self.kafka.bootstrap, topics, self.partitions))
        dsn_file = self.postgres.databases().url_file(f"bench-{variant}")
        self.postgres.ensure_database(f"bench-{variant}")
        start = self._service if variant == "service" else self._dual_write
        stop, url, pid = start(prefix, dsn_file)
        return stop, url, topic, pid

    def _latency(
        self, url: str, topic: str, rate: int, seconds: float, work: Path
    ) -> dict[str, Any]:
        load = attack(url, body, rate, seconds, work, ok=(201,))
        stamps = broker_stamps(self.kafka.bootstrap, topic, set(load.answered), 30)
        whole = sorted(stamps[key] - load.due[key] for key in stamps)
        return {
            "sent": len(load.due),
            "received": len(whole),
            **({f"p{p}": percentile(whole, p) for p in (50, 99)} if whole else {}),
            **load.figures(),
        }

    def _maximum(
        self, url: str, topic: str, seconds: float, workers: int, work: Path
    ) -> dict[str, Any]:
        load = attack(url, body, 0, seconds, work, ok=(201,), workers=workers)
        began = min(load.due.values(), default=0.0)
        stamps = broker_stamps(self.kafka.bootstrap, topic, set(load.answered), 30)
        in_time = sum(1 for stamp in stamps.values() if stamp <= began + load.seconds * 1000)
        return {
            "max_events_per_s": round(in_time / load.seconds, 1),
            "max_writes_per_s": round(len(load.answered) / load.seconds, 1),
            "max_generator_cpu_cores": load.figures()["generator_cpu_cores"],
        }

    def _service(self, prefix: str, dsn_file: Path) -> tuple[Callable[[], None], str, int]:
        env = self.env(
            CONSUMES_TOPIC=f"{prefix}.requested",
            PRODUCES_TOPIC=f"{prefix}.created",
            DEAD_LETTER_TOPIC=f"{prefix}.dead-letter",
            CONSUMER_GROUP=prefix,
            SERVICE_INSTANCE_ID=prefix,
            DATABASE_URL_FILE=str(dsn_file),
        )
        process = ServiceProcess(self.info, self.script, env, self.logs / f"{prefix}.log").start()
        wait_for(f"{process.url}/health/ready", lambda status: status == 200, process.log_tail)

        def stop() -> None:
            process.terminate()

        return stop, f"{process.url}/api/v1/value-models", process.pid

    def _dual_write(self, prefix: str, dsn_file: Path) -> tuple[Callable[[], None], str, int]:
        (port,) = free_ports(1)
        python = self.script.parent / "python"
        dual = Path(__file__).with_name("dualwrite.py")
        package = self.info.package
        command = [str(python), str(dual), package, self.kafka.bootstrap, str(port)]
        log = (self.logs / f"{prefix}.log").open("w")
        process = subprocess.Popen(
            [*command, f"{prefix}.requested", str(dsn_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"

        def tail() -> str:
            return (self.logs / f"{prefix}.log").read_text()[-2000:]

        def stop() -> None:
            stop_process_group(process.pid, timeout=30)
            process.wait()
            log.close()

        try:
            wait_for(url, lambda status: status == 404, tail)
        except BaseException:
            stop()
            raise
        return stop, f"{url}/api/v1/value-models", process.pid


def body(key: str) -> dict[str, str]:
    return {"company_name": key, "industry": "Bench"}


def wait_for(url: str, up: Callable[[int], bool], tail: Callable[[], str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if up(httpx.get(url, timeout=2).status_code):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not up after 90 s:\n{tail()}")
