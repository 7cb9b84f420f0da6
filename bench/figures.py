"""docs/benchmarks.json from one `make bench` run, with every goal stated and judged.

The goals are issue 26's and issue 23's, as written there; a missed goal is reported
as missed, never moved. Every ratio is taken repeat by repeat (the variants of one
repeat ran side by side), then summarised: min, median, max and spread.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import summary
from bench.profile import shares
from bench.provenance import chassis_release, commit

STABLE_SPREAD = 0.20  # the headline ratio's runs within ±10 % of their median
Runs = dict[str, list[dict[str, Any]]]

GOALS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "throughput_ratio_vs_aiokafka_batch": (
        "median >= 0.85 and min >= 0.8",
        lambda s: s["median"] >= 0.85 and s["min"] >= 0.8,
    ),
    "throughput_ratio_vs_aiokafka": ("median >= 0.95", lambda s: s["median"] >= 0.95),
    "throughput_ratio_full_sampling_vs_aiokafka_batch": (
        "median >= 0.5",
        lambda s: s["median"] >= 0.5,
    ),
    "latency_p99_ratio_vs_aiokafka": ("median <= 1.5", lambda s: 0 < s["median"] <= 1.5),
    "write_path_p99_ratio_vs_dual_write": ("median <= 2", lambda s: 0 < s["median"] <= 2),
    "write_path_throughput_ratio_vs_dual_write": (
        "median >= 0.7",
        lambda s: s["median"] >= 0.7,
    ),
}


def ratio(runs: Runs, over: str, under: str, key: str = "msgs_per_s") -> dict[str, Any]:
    """`over` / `under` repeat by repeat; a repeat without both figures is left out."""
    found = [
        o[key] / u[key]
        for o, u in zip(runs[over], runs[under], strict=True)
        if u.get(key) and o.get(key)
    ]
    return summary(found) if found else {"median": 0.0, "min": 0.0, "spread": 0.0}


def of(runs: Runs, key: str) -> dict[str, dict[str, Any]]:
    """Each variant's figure `key`, summarised over its runs (runs without it left out)."""
    return {
        name: summary([r[key] for r in values if r.get(key) is not None])
        for name, values in runs.items()
        if any(r.get(key) is not None for r in values)
    }


PACKAGE = re.compile(r"\(([\w.]+?)[/.]")  # "send (aiokafka/producer/producer.py:1)"
# Leaves where a thread waits rather than runs: py-spy samples some of them even
# without --idle (the exporters' and anyio's worker threads, the event loop's select).
WAITING = ("Condition.wait ", "Event.wait ", "EpollSelector.select ", "Queue.get ")


def profile(path: Path) -> dict[str, Any]:
    """Where a process ran: shares of its running samples by package (inclusive, so a
    stack counts for every package in it) and its busiest frames (self)."""
    if not path.exists():
        return {"samples": 0}
    total, _, _ = shares(path)
    packages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    running = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        if not stack or not count.isdigit() or leaf.startswith(WAITING):
            continue
        running += int(count)
        own[leaf] += int(count)
        for package in {m.group(1) for m in PACKAGE.finditer(stack)}:
            packages[package] += int(count)
    share = 100 / max(running, 1)
    return {
        "samples": total,
        "running_samples": running,
        "by_package_pct": {p: round(n * share, 1) for p, n in packages.most_common(16)},
        "top_self_pct": {f: round(n * share, 1) for f, n in own.most_common(10)},
    }


def every_figure(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each numeric figure of a variant's runs, summarised."""
    keys = sorted({key for run in values for key, v in run.items() if isinstance(v, int | float)})
    return {key: summary([r[key] for r in values if r.get(key) is not None]) for key in keys}


def judged(key: str, figure: dict[str, Any]) -> dict[str, Any]:
    goal, met = GOALS[key]
    return {"value": figure["median"], "goal": goal, "met": met(figure), "runs": figure}


def assemble(
    *,
    sizes: dict[str, Any],
    settings: dict[str, Any],
    sampling: str,
    runs: Runs,
    lat: Runs,
    curves: dict[str, list[dict[str, Any]]],
    knees: dict[str, int],
    profiles: dict[str, Any],
    writes: Runs,
    renders: list[float],
    built: dict[str, Any],
) -> dict[str, Any]:
    ratios = {
        "service / aiokafka_batch": ratio(runs, "service", "aiokafka_batch"),
        "service / aiokafka": ratio(runs, "service", "aiokafka"),
        "service_full_sampling / aiokafka_batch": ratio(
            runs, "service_full_sampling", "aiokafka_batch"
        ),
        "service_no_log_export / aiokafka_batch": ratio(
            runs, "service_no_log_export", "aiokafka_batch"
        ),
        "service / service_no_log_export": ratio(runs, "service", "service_no_log_export"),
        "faststream / aiokafka_batch": ratio(runs, "faststream", "aiokafka_batch"),
        "aiokafka / aiokafka_batch": ratio(runs, "aiokafka", "aiokafka_batch"),
    }
    headline = {
        "throughput_ratio_vs_aiokafka_batch": ratios["service / aiokafka_batch"],
        "throughput_ratio_vs_aiokafka": ratios["service / aiokafka"],
        "throughput_ratio_full_sampling_vs_aiokafka_batch": ratios[
            "service_full_sampling / aiokafka_batch"
        ],
        "latency_p99_ratio_vs_aiokafka": ratio(lat, "service", "aiokafka", "p99"),
        "write_path_p99_ratio_vs_dual_write": ratio(writes, "service", "dual_write", "p99"),
        "write_path_throughput_ratio_vs_dual_write": ratio(
            writes, "service", "dual_write", "max_events_per_s"
        ),
    }
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "chassis_version": chassis_release(),
        "cpus": os.cpu_count(),
        **sizes,
        "client_settings": settings,
        "default_trace_sampling": sampling,
        **{key: round(figure["median"], 3) for key, figure in headline.items()},
        "latency_knee_rps": knees,
        "goals": {key: judged(key, figure) for key, figure in headline.items()},
        "throughput_msgs_per_s": of(runs, "msgs_per_s"),
        "throughput_ratios": ratios,
        "log_export_cost_pct": round(
            100 * (1 - ratios["service / service_no_log_export"]["median"]), 1
        ),
        "warmup_msgs_per_s": of(runs, "warmup_msgs_per_s"),
        "first_result_s": of(runs, "first_result_s"),
        "window_s": of(runs, "window_s"),
        "cpu_ms_per_1000_messages": of(runs, "cpu_ms_per_1000"),
        "cpu_ratios": {
            "service / aiokafka_batch": ratio(runs, "service", "aiokafka_batch", "cpu_ms_per_1000"),
            "service_full_sampling / service": ratio(
                runs, "service_full_sampling", "service", "cpu_ms_per_1000"
            ),
        },
        "rss_mib_under_load": of(runs, "rss_mib_load"),
        "latency": {kind: every_figure(values) for kind, values in lat.items()},
        "latency_p50_ratio_vs_aiokafka": round(
            ratio(lat, "service", "aiokafka", "p50")["median"], 3
        ),
        "latency_curve": curves,
        "http_path_profile": profiles,
        "write_path": {name: every_figure(values) for name, values in writes.items()},
        "startup_to_passing_s": summary([r["startup_s"] for r in lat["service"]]),
        "rss_mib_idle_service": summary([r["rss_mib_idle"] for r in lat["service"]]),
        "render_s": summary(renders),
        "image": built,
    }
