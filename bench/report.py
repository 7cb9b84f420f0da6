"""docs/benchmarks.md from the figures of one `make bench` run (no figure is typed here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.rendering import render

VARIANTS = {
    "service": "generated service, everything on, default sampling",
    "service_full_sampling": "generated service, everything on, every request traced",
    "faststream": "FastStream, no middleware",
    "aiokafka": "bare aiokafka loop",
}

STEPS = {
    "post_to_request": "POST to request",
    "request_to_result": "request to result",
    "result_to_audit": "result to audit",
}


def time_render(directory: Path) -> float:
    started = time.perf_counter()
    render(directory)
    return time.perf_counter() - started


def labels(r: dict[str, Any]) -> dict[str, str]:
    """The variants' names, the default sampling as the chassis sets it."""
    default = f"{VARIANTS['service']} ({r.get('default_trace_sampling', '?')})"
    return {**VARIANTS, "service": default}


def row(name: str, figure: dict[str, Any]) -> str:
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


def markdown(r: dict[str, Any]) -> str:
    t = r["throughput_msgs_per_s"]
    low, high = (str(rate) for rate in r["latency_rates_per_s"])
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` at {r['measured_at']} from commit `{r['commit']}`, "
        f"event-chassis {r['chassis_version']}, on {r['cpus']} CPUs. One run: every figure "
        "below comes from it.",
        "",
        f"**Throughput ratio, generated service / bare aiokafka: "
        f"{r['throughput_ratio_vs_aiokafka']}** (median of {r['repeats']} repeats; at 100 % "
        f"sampling {r['throughput_ratio_full_sampling_vs_aiokafka']}). Latency through two "
        f"services at {low} requests/s, service / bare aiokafka chain: p50 "
        f"{r['latency_p50_ratio_vs_aiokafka']}x, p99 {r['latency_p99_ratio_vs_aiokafka']}x.",
        "",
        "## Throughput",
        "",
        f"{r['messages_per_run']} requests of 1 KiB per run, 3 partitions; each repeat runs every "
        f"variant on topics of its own, starting with a different one; {r['repeats']} repeats "
        f"({r['repeats_asked']} asked, more while the aiokafka baseline spread over ±15 %). "
        "Spread = (max - min) / median.",
        "",
        "| msg/s | min | median | max | spread | runs |",
        "|---|---|---|---|---|---|",
        *(row(label, t[name]) for name, label in labels(r).items()),
        row("ratio, service / aiokafka", r["throughput_ratio"]),
        "",
        f"CPU time of the process per 1,000 messages (a busy machine changes it far less than "
        f"the rates above): the service spends {r['cpu_ratio_vs_aiokafka']}x the bare loop's.",
        "",
        "| CPU ms per 1,000 messages | min | median | max | spread | runs |",
        "|---|---|---|---|---|---|",
        *(row(label, r["cpu_ms_per_1000_messages"][name]) for name, label in labels(r).items()),
        "",
        "| peak RSS under load (MiB) | min | median | max | spread | runs |",
        "|---|---|---|---|---|---|",
        *(row(label, r["rss_mib_under_load"][name]) for name, label in labels(r).items()),
        "",
        "## Latency",
        "",
        f"`POST` to the first service until the second service's result is in Kafka (broker "
        f"timestamp), {r['latency_seconds']:.0f} s at each rate; the bare chain is the same two "
        "hops in bare aiokafka behind a raw ASGI endpoint (bench/chain.py).",
        "",
        "| ms | min | median | max | spread | runs |",
        "|---|---|---|---|---|---|",
    ]
    for rate in (low, high):
        for kind, label in (("service", "generated services"), ("aiokafka", "bare chain")):
            figures = r["latency"][rate][kind]
            for p in ("p50", "p95", "p99"):
                lines.append(row(f"{p} at {rate}/s, {label}", figures[f"{p}_ms"]))
            lines.append(
                f"| handled at {rate}/s, {label} | | | | | "
                f"{figures['received']} of {figures['sent']} |"
            )
    lines += [
        "",
        "Where the time goes: the median of each step of a request's way, from the records'",
        "own timestamps (each set by its producer as it sends): `POST` to the request's record",
        "(HTTP and the produce call), request to result (the first consumer's fetch, handler and",
        "produce call), result to audit (the second's). Medians of the repeats' figures, ms.",
        "",
        "| p50 / p99 ms | " + " | ".join(STEPS.values()) + " |",
        "|---|" + "---|" * len(STEPS),
    ]
    for rate in (low, high):
        for kind, label in (("service", "generated services"), ("aiokafka", "bare chain")):
            figures = r["latency"][rate][kind]
            cells = (
                f"{figures[f'p50_ms_{step}']['median']} / {figures[f'p99_ms_{step}']['median']}"
                for step in STEPS
            )
            lines.append(f"| {label} at {rate}/s | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Start-up, memory, rendering",
        "",
        "| | min | median | max | spread | runs |",
        "|---|---|---|---|---|---|",
        row("process start to passing in Consul (s)", r["startup_to_passing_s"]),
        row("RSS idle, generated service (MiB)", r["rss_mib_idle_service"]),
        row("render one service (s)", r["render_s"]),
        "",
        *image_lines(r["image"]),
        "",
        "## Methods: the client settings of every variant",
        "",
        "The generated service, the FastStream baseline and the bare aiokafka loop and chain",
        "take these from the same code, `event_chassis.clients` with the service's settings",
        "(bench/baselines.py); this table is printed by that code:",
        "",
        "| setting | every variant |",
        "|---|---|",
    ]
    for client, settings in r["client_settings"].items():
        lines += [f"| {client} `{key}` | `{value}` |" for key, value in settings.items()]
    lines += [
        "",
        "What differs is what the chassis adds: the service validates each request with pydantic,",
        "retries and dead-letters on its own, traces (a span per message; OTLP to Jaeger, which",
        "runs throughout), counts Prometheus metrics and serves HTTP, health and Consul",
        "registration. All variants decode the request, build the result, produce it keyed like",
        "the request and commit a batch only once every result in it is acknowledged.",
        "How they produce differs: the service appends a batch's results to aiokafka record",
        "batches (`create_batch`/`send_batch`, event_chassis.results), the bare loop calls",
        "`send` per result as most aiokafka code does, FastStream `broker.publish`.",
        "Throughput comes from the broker timestamps of the first and last result.",
    ]
    return "\n".join(lines) + "\n"
