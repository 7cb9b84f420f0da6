"""The open-loop load generator of `make bench`: vegeta, in a process of its own.

vegeta (github.com/tsenart/vegeta, built once from the Go module proxy into the
platform's cache, as platform_native builds its Go servers) sends requests at a
constant rate whether or not earlier ones were answered, spawning workers as
needed: a slow service cannot slow the load down. Coordinated omission is
corrected on top: vegeta's constant pacer makes request `seq` due at
start + seq / rate, and each request's latency here runs from when it was due, not
from when it left, so the generator's own delays count against the service, never
in its favour. Every request has a body and a URL of its own, and the URL carries
its key, so each answer is matched to its records in Kafka. vegeta's CPU time
(from wait4) is reported: it shows the generator was not the bottleneck.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "infrastructure" / "native")]

from platform_native import build, gobuild  # noqa: E402

MODULE, VERSION = "github.com/tsenart/vegeta/v12", "12.13.0"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    gobuild.go_install(MODULE, VERSION, out, work, log, "")


def vegeta() -> Path:
    """The vegeta binary, built once into the platform's cache."""
    return build.ensure("vegeta", VERSION, _recipe) / "vegeta"


@dataclass
class Attack:
    """What one run of the generator sent and got back; times in epoch ms."""

    due: dict[str, float]  # by key: when its request was due
    answered: dict[str, float]  # by key: when its answer arrived (answers in `ok` only)
    codes: Counter[int]
    offered_rps: float
    sent_rps: float
    seconds: float
    generator_cpu_s: float
    late_p99_ms: float  # how much later than due the requests left

    @property
    def errors(self) -> int:
        return sum(self.codes.values()) - len(self.answered)

    def figures(self) -> dict[str, float]:
        """The generator's side, for the report."""
        return {
            "offered_rps": self.offered_rps,
            "sent_rps": round(self.sent_rps, 1),
            "errors": self.errors,
            "generator_cpu_cores": round(self.generator_cpu_s / self.seconds, 3),
            "generator_late_p99_ms": round(self.late_p99_ms, 1),
        }


def attack(
    url: str,
    body: Callable[[str], dict[str, str]],
    rate: int,
    seconds: float,
    workdir: Path,
    ok: tuple[int, ...] = (200, 201, 202),
    workers: int = 0,
) -> Attack:
    """POST `body(key)` to `url` at `rate`/s for `seconds`, one new key per request.

    `rate=0` runs closed loop instead: as fast as `workers` concurrent requests go
    (the maximum a service sustains); then a request is due when it leaves.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    count = int((rate or 20_000) * seconds * 1.05) + 10
    targets, results = workdir / f"{prefix}.targets", workdir / f"{prefix}.bin"
    with targets.open("w") as out:
        for i in range(count):
            key = f"{prefix}-{i}"
            payload = base64.b64encode(json.dumps(body(key)).encode()).decode()
            target = {"method": "POST", "url": f"{url}?key={key}", "body": payload}
            out.write(json.dumps(target | {"header": {"Content-Type": ["application/json"]}}))
            out.write("\n")
    command = [str(vegeta()), "attack", "-format=json", f"-targets={targets}", "-lazy"]
    command += [f"-rate={rate}/s", f"-duration={seconds}s", "-timeout=30s", f"-output={results}"]
    if workers:
        command += [f"-workers={workers}", f"-max-workers={workers}"]
    began = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)  # its rusage: the generator's own CPU
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - began
    if process.returncode != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"vegeta exited with {process.returncode}: {error}")
    encoded = subprocess.run(
        [str(vegeta()), "encode", "-to=csv", str(results)], capture_output=True, check=True
    ).stdout.decode()
    targets.unlink()
    results.unlink()
    return _parse(encoded, rate, min(seconds, elapsed), ok, usage.ru_utime + usage.ru_stime)


def _parse(encoded: str, rate: int, seconds: float, ok: tuple[int, ...], cpu_s: float) -> Attack:
    rows = [
        (int(row[0]) / 1e6, int(row[1]), int(row[2]) / 1e6, int(row[8]), row[10])
        for row in csv.reader(encoded.splitlines())
    ]
    # The pacer's start: the earliest (left - seq / rate); vegeta never leaves early.
    pace = 1000 / rate if rate else 0.0
    start = min((left - seq * pace for left, _, _, seq, _ in rows), default=0.0)
    due, answered, codes, late = {}, {}, Counter[int](), []
    for left, code, latency, seq, url in rows:
        if "?key=" not in url:  # past the last target (closed loop only): nothing was sent
            continue
        key = url.rsplit("?key=", 1)[1]
        due[key] = start + seq * pace if rate else left
        late.append(left - due[key])
        codes[code] += 1
        if code in ok:
            answered[key] = left + latency
    late.sort()
    return Attack(
        due=due,
        answered=answered,
        codes=codes,
        offered_rps=rate,
        sent_rps=len(rows) / seconds,
        seconds=seconds,
        generator_cpu_s=cpu_s,
        late_p99_ms=late[int(0.99 * (len(late) - 1))] if late else 0.0,
    )
