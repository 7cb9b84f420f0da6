"""docs/benchmarks.md from the figures of one `make bench` run (no figure is typed here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.rendering import render

VARIANTS = {
    "service": "generated service, everything on (traces and logs exported), default sampling",
    "service_no_log_export": "generated service, log export off",
    "service_full_sampling": "generated service, everything on, every request traced",
    "faststream": "FastStream, no middleware, `publish` per result",
    "aiokafka": "bare aiokafka loop, `send()` per result",
    "aiokafka_batch": "bare aiokafka loop, batch API (`create_batch`/`send_batch`)",
}
CHAINS = {"service": "generated services", "aiokafka": "bare aiokafka chain"}
PROFILED = {
    "service": "generated services, HTTP process",
    "aiokafka": "bare chain, HTTP process",
    "write_path_service": "service with database=postgres, writes",
}
WRITES = {"service": "service, database=postgres (outbox)", "dual_write": "bare dual write"}
STEPS = {
    "post_to_request": "POST to request",
    "request_to_result": "request to result",
    "result_to_audit": "result to audit",
}
HEADER = ["| | min | median | max | spread | runs |", "|---|---|---|---|---|---|"]


def time_render(directory: Path) -> float:
    started = time.perf_counter()
    render(directory)
    return time.perf_counter() - started


def row(name: str, figure: dict[str, Any] | None) -> str:
    if not figure:
        return f"| {name} | | | | | not measured |"
    return (
        f"| {name} | {figure['min']} | {figure['median']} | {figure['max']} "
        f"| {figure['spread']} | {figure['runs']} |"
    )


def image_lines(figures: dict[str, Any]) -> list[str]:
    """The service's image, built by its CI workflow's step (bench/image.py)."""
    if "not_measured" in figures:
        return [f"The service's image was not measured: {figures['not_measured']}."]
    return [
        f"The service's image, built by its CI workflow's step in {figures['build_s']} s "
        f"({figures['storage_driver']} storage): **{figures['image_mb']} MB** uncompressed, "
        f"of which {figures['service_layers_mb']} MB above its base, {figures['base_image']} "
        f"({figures['base_mb']} MB)."
    ]


def goals(r: dict[str, Any]) -> list[str]:
    lines = ["| key | median | min / max | goal | |", "|---|---|---|---|---|"]
    for key, goal in r["goals"].items():
        runs = goal["runs"]
        verdict = "met" if goal["met"] else "**missed**"
        lines.append(
            f"| `{key}` | {goal['value']} | {runs.get('min')} / {runs.get('max')} "
            f"| {goal['goal']} | {verdict} |"
        )
    knees = ", ".join(f"{CHAINS[k]} {v}/s" for k, v in r["latency_knee_rps"].items())
    return [*lines, "", f"`latency_knee_rps`: {knees}."]


def throughput(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Throughput",
        "",
        f"Each run reads 1 KiB requests from one shared source topic (3 partitions) in a "
        f"consumer group of its own and writes results to a topic of its own. It is measured "
        f"over {r['steady_seconds']:.0f} s of steady state that open {r['warmup_seconds']:.0f} s "
        "after its first result (start-up rebalances and first fetches fall before), from "
        "the results topic's end offsets, read by the bench at both ends of the window. "
        f"{r['repeats']} repeats ({r['repeats_asked']} asked, more while the headline ratio "
        "spread over ±10 %), each running every variant once, starting with a different "
        "one. Spread = (max - min) / median.",
        "",
        *HEADER,
        *(
            row(f"{label} (msg/s)", r["throughput_msgs_per_s"].get(n))
            for n, label in VARIANTS.items()
        ),
        *(row(f"ratio {name}", figure) for name, figure in r["throughput_ratios"].items()),
        "",
        f"Log export through the collector costs {r['log_export_cost_pct']} % of the "
        "service's throughput (service / service with `OTEL_LOGS_EXPORTER=none`).",
        "",
        "Warm-up, excluded from the figures above: the rate in the warm-up window and the "
        "time from the process' start to its first result.",
        "",
        *HEADER,
        *(row(f"{VARIANTS[n]} (msg/s)", f) for n, f in r["warmup_msgs_per_s"].items()),
        *(row(f"{VARIANTS[n]}, first result (s)", f) for n, f in r["first_result_s"].items()),
        "",
        "CPU time of the process per 1,000 messages in the window (a busy machine changes it "
        "far less than the rates):",
        "",
        *HEADER,
        *(row(VARIANTS[n], f) for n, f in r["cpu_ms_per_1000_messages"].items()),
        *(row(f"ratio {name}", f) for name, f in r["cpu_ratios"].items()),
        "",
        *HEADER,
        *(row(f"{VARIANTS[n]}, peak RSS (MiB)", f) for n, f in r["rss_mib_under_load"].items()),
    ]
    return lines


def latency(r: dict[str, Any]) -> list[str]:
    rate = r["latency_rate_per_s"]
    settled = r["settled_after_throughput"]
    first = r.get("latency_first_starts") or {"service": {}, "aiokafka": {}}
    lines = [
        "## Latency",
        "",
        f"`POST` to the first service until the second service's result is in Kafka, at "
        f"{rate} requests/s for {r['latency_seconds']:.0f} s per start of each chain. The "
        "load comes from vegeta in its own process, open loop (constant rate whatever the "
        "answers), and each latency runs from when its request was due, so the generator's "
        "delays count against the chain (coordinated omission corrected). The end is the "
        "broker's timestamp: the bench topics use `message.timestamp.type=LogAppendTime`, "
        "so no producer under test sets it. Each start is warmed up for "
        f"{r['warmup_seconds']:.0f} s at the same rate first (its p99 below, excluded). The "
        "bare chain is the same two hops in bare aiokafka (batch API) behind a raw ASGI "
        "endpoint (bench/chain.py). Before the first start, the bench waited until the "
        f"broker had removed the {settled.get('partitions_deleting', 0)} partitions of the "
        f"throughput runs' deleted topics ({settled.get('deletion_wait_s', 0)} s; it does "
        "so a minute after each deletion), then flushed the page cache those runs left "
        f"dirty ({settled['dirty_mib']} MiB, `sync` {settled['sync_s']} s), so neither "
        "falls into a measured run. Then one start of each chain ran without being "
        f"counted (p99 {first['service'].get('p99')} ms for the generated services, "
        f"{first['aiokafka'].get('p99')} ms for the bare chain): whichever chain went first "
        "on this broker was its slowest start, for 10-20 s of load, while the other "
        "chain's start right after it was not, and the servers were idle meanwhile; so the "
        "broker itself warms up on this low-rate path (most likely its JIT: the "
        "throughput runs take other code paths).",
        "",
        *HEADER,
    ]
    for kind, label in CHAINS.items():
        figures = r["latency"][kind]
        lines += [row(f"{p} (ms), {label}", figures.get(p)) for p in ("p50", "p95", "p99")]
        lines += [
            row(f"warm-up p99 (ms), {label}", figures.get("warmup_p99")),
            row(f"HTTP answer p99 (ms), {label}", figures.get("http_p99")),
            row(f"load generator CPU (cores), {label}", figures.get("generator_cpu_cores")),
            row(f"requests with an audit, {label}", figures.get("received")),
        ]
    lines += [
        "",
        "Where the time goes, between broker timestamps: `POST` (due) to the request's "
        "record (HTTP, the API and its produce call), request to result (the first "
        "consumer's fetch, handler and produce call), result to audit (the second's). "
        "Medians of the starts' figures, ms.",
        "",
        "| p50 / p99 ms | " + " | ".join(STEPS.values()) + " |",
        "|---|" + "---|" * len(STEPS),
    ]
    for kind, label in CHAINS.items():
        figures = r["latency"][kind]
        cells = (
            f"{figures.get(f'split_p50_{s}', {}).get('median')} / "
            f"{figures.get(f'split_p99_{s}', {}).get('median')}"
            for s in STEPS
        )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def curve(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Load curve",
        "",
        "![p50 and p99 against offered load](latency-curve.svg)",
        "",
        f"Each chain started once, warmed up, then {r['curve_seconds']:.0f} s at each offered "
        "load, doubling past the listed ones until it saturates: under 95 % of the offered "
        "load left the generator, under 99 % of the requests' audits reached Kafka within "
        "20 s, over 1 % errors, or a median over 1 s (a queue building). The knee is the "
        "highest load the chain keeps up with while its p99 stays within 3 times its p99 at "
        "the lowest load.",
        "",
        "| chain | offered/s | sent/s | p50 ms | p99 ms | HTTP p99 ms | audits | generator CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, points in r["latency_curve"].items():
        for p in points:
            lines.append(
                f"| {CHAINS[kind]} | {p['offered_rps']} | {p['sent_rps']} | {p.get('p50')} "
                f"| {p.get('p99')} | {p.get('http_p99')} | {p['kept_up']:.1%} "
                f"| {p['generator_cpu_cores']} |"
            )
    lines += [
        "",
        f"Profiles at {r['latency_rate_per_s']} requests/s of each chain's HTTP process and "
        "of the stateful service under writes (py-spy, 100 Hz, runs of their own after the "
        "measured ones), as shares of the "
        "samples in which a thread ran rather than waited, by package (inclusive: a stack "
        "counts for every package in it):",
        "",
    ]
    for kind, figures in r["http_path_profile"].items():
        shares = ", ".join(f"{p} {v} %" for p, v in figures.get("by_package_pct", {}).items())
        lines.append(
            f"- {PROFILED[kind]} ({figures.get('running_samples')} running samples, p99 "
            f"{figures.get('p99_while_profiled')} ms while sampled): {shares}"
        )
    return lines


def writes(r: dict[str, Any]) -> list[str]:
    lines = [
        "## The write path",
        "",
        f"An HTTP write until its event is in Kafka (broker timestamp), at "
        f"{r['latency_rate_per_s']} writes/s for {r['write_seconds']:.0f} s (open loop, from "
        f"when each was due), then the most events that reach Kafka per second while "
        f"{r['write_workers']} concurrent writers write as fast as they can (closed loop, "
        f"{r['write_seconds']:.0f} s). The service (`database=postgres`) saves the row and "
        "an outbox row in one transaction, answers 201, and its relay publishes the event; "
        "its consumer also handles each request, as the service always does. The bare dual "
        "write (bench/dualwrite.py) inserts with asyncpg, then sends with aiokafka and "
        "waits: the unsafe version. Repeats alternate which goes first.",
        "",
        *HEADER,
    ]
    for name, label in WRITES.items():
        figures = r["write_path"][name]
        lines += [row(f"{p} (ms), {label}", figures.get(p)) for p in ("p50", "p99")]
        lines += [
            row(f"max events in Kafka/s, {label}", figures.get("max_events_per_s")),
            row(f"max 201s/s, {label}", figures.get("max_writes_per_s")),
        ]
    return lines


def methods(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Methods: the client settings of every variant",
        "",
        "The generated service, the FastStream baseline and the bare aiokafka loops, chain",
        "and dual write take these from the same code, `event_chassis.clients` with the",
        "service's settings (bench/baselines.py); this table is printed by that code:",
        "",
        "| setting | every variant |",
        "|---|---|",
    ]
    for client, settings in r["client_settings"].items():
        lines += [f"| {client} `{key}` | `{value}` |" for key, value in settings.items()]
    return [
        *lines,
        "",
        "All throughput variants decode the request, build the result, produce it keyed like",
        "the request and commit a consumed batch only once every result in it is",
        "acknowledged. They differ in how they produce and in what the chassis adds. The",
        "batch loop appends a batch's results to one record batch per partition",
        "(`create_batch`/`send_batch`), as the service does (event_chassis.results): the",
        "client's limit. The `send()` loop awaits `send` per result, as most aiokafka code",
        "does; FastStream calls `broker.publish` per result. Only the service validates",
        "each request with pydantic, retries and dead-letters, traces (a span per message),",
        "exports logs and traces through the OpenTelemetry Collector (to Jaeger and",
        "VictoriaLogs, which run throughout), counts Prometheus metrics and serves HTTP,",
        "health and Consul registration.",
    ]


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` at {r['measured_at']} from commit `{r['commit']}`, "
        f"event-chassis {r['chassis_version']}, on {r['cpus']} CPUs, with the default trace "
        f"sampling `{r['default_trace_sampling']}`. One run: every figure below comes from "
        "it, and so does latency-curve.svg. Goals (issues 26 and 23) as written there:",
        "",
        *goals(r),
        "",
        *throughput(r),
        "",
        *latency(r),
        "",
        *curve(r),
        "",
        *writes(r),
        "",
        "## Start-up, memory, rendering",
        "",
        *HEADER,
        row("process start to passing in Consul (s)", r["startup_to_passing_s"]),
        row("RSS idle, generated service (MiB)", r["rss_mib_idle_service"]),
        row("render one service (s)", r["render_s"]),
        "",
        *image_lines(r["image"]),
        "",
        *methods(r),
    ]
    return "\n".join(lines) + "\n"
