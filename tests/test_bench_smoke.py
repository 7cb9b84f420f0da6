"""`make bench` at a tiny size, so the harness cannot rot between benchmark runs.

Every part runs, at sizes that only prove the harness works: each throughput
variant, latency through both chains with the open-loop generator (vegeta), both
load curves and latency-curve.svg, the HTTP path's profiles and the write path
against the bare dual write. Not the service's image (`BENCH_IMAGE=0`): building it
took 100 s of the smoke's 200, and tests/test_images.py builds it as the service's
CI workflow does. About 1.5 minutes once the services are installed.
They are kept in a cache directory named by a hash of the template, so a changed
template is rendered and installed afresh (that first run takes a few minutes more).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from platform_native import versions

from .conftest import REPO

pytestmark = pytest.mark.infra


def template_hash() -> str:
    digest = hashlib.sha256()
    files = [REPO / "cookiecutter.json", *sorted((REPO / "hooks").rglob("*.py"))]
    for tree in ("{{cookiecutter.service_name}}", "chassis/src"):
        files += sorted(
            path
            for path in (REPO / tree).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        )
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def installed_services_dir() -> Path:
    cache = versions.cache_dir() / "bench-services"
    current = cache / template_hash()
    if cache.exists():
        for stale in cache.iterdir():
            if stale != current:
                shutil.rmtree(stale, ignore_errors=True)
    return current


def test_bench_harness_writes_both_documents(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BENCH_MESSAGES": "3000",
        "BENCH_SECONDS": "1",
        "BENCH_WARMUP": "0.5",
        "BENCH_REPEATS": "1",
        "BENCH_MAX_REPEATS": "1",
        "BENCH_RATE": "10",
        "BENCH_LATENCY_SECONDS": "2",
        "BENCH_CURVE_RATES": "10,20",
        "BENCH_CURVE_SECONDS": "1",
        "BENCH_CURVE_CEILING": "20",
        "BENCH_WRITE_REPEATS": "1",
        "BENCH_WRITE_SECONDS": "1",
        "BENCH_WRITE_WORKERS": "2",
        "BENCH_PROFILE_SECONDS": "2",
        "BENCH_SETTLE_SECONDS": "0",  # no wait for the broker's deletions
        "BENCH_IMAGE": "0",  # 100 s; tests/test_images.py builds the same image as its CI does
        "BENCH_OUTPUT": str(tmp_path),
        "BENCH_SERVICES": str(installed_services_dir()),
        "CONSUL_CHECK_INTERVAL": "1s",  # the services pass sooner; the default is 5 s
    }
    bench = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "run.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=900)
    finally:
        if bench.poll() is None:  # SIGTERM: the bench stops the servers it started
            bench.terminate()
            stdout, stderr = bench.communicate(timeout=60)
    assert bench.returncode == 0, stdout[-4000:] + stderr[-4000:]
    figures = json.loads((tmp_path / "benchmarks.json").read_text())
    for key in (
        "throughput_ratio_vs_aiokafka_batch",
        "throughput_ratio_vs_aiokafka",
        "throughput_ratio_full_sampling_vs_aiokafka_batch",
        "latency_p99_ratio_vs_aiokafka",
        "write_path_p99_ratio_vs_dual_write",
        "write_path_throughput_ratio_vs_dual_write",
    ):
        assert figures[key] > 0, key
        assert figures["goals"][key]["met"] in (True, False)
    variants = {
        "service",
        "service_no_log_export",
        "service_full_sampling",
        "faststream",
        "aiokafka",
        "aiokafka_batch",
    }
    assert set(figures["throughput_msgs_per_s"]) == variants
    for chain in figures["latency"].values():  # every request's audit, broker-stamped
        assert chain["received"]["runs"] == chain["sent"]["runs"]
    assert set(figures["latency_knee_rps"]) == {"service", "aiokafka"}
    assert all(len(points) >= 2 for points in figures["latency_curve"].values())
    assert all(p["samples"] > 0 for p in figures["http_path_profile"].values())
    for variant in figures["write_path"].values():
        assert variant["received"]["runs"] == variant["sent"]["runs"]
        assert variant["max_events_per_s"]["median"] > 0
    assert (tmp_path / "latency-curve.svg").read_text().lstrip().startswith("<?xml")
    assert figures["client_settings"]["producer"]["acks"] == "all"
    assert figures["image"] == {"not_measured": "BENCH_IMAGE=0"}
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert "## Methods: the client settings of every variant" in markdown
