"""`make bench` at a tiny size, so the harness cannot rot between benchmark runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.infra


def test_bench_harness_writes_both_documents(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BENCH_MESSAGES": "300",
        "BENCH_REPEATS": "1",
        "BENCH_RATE": "20",
        "BENCH_SECONDS": "2",
        "BENCH_OUTPUT": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads((tmp_path / "benchmarks.json").read_text())
    assert figures["throughput_ratio_vs_aiokafka"] > 0
    assert figures["latency_requests"]["received"] == figures["latency_requests"]["sent"]
    assert "| Throughput, generated service (msg/s) |" in (tmp_path / "benchmarks.md").read_text()
