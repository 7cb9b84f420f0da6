"""Latency through a chain of services, under open-loop load (bench/loadgen.py).

A request's latency runs from when the generator was due to send it until its last
record is in Kafka, stamped by the broker (the topics use LogAppendTime), so nothing
the code under test does sets either end. The steps between come from the same
broker stamps: POST to the request's record (HTTP, the API and its produce call),
request to result (the first consumer's fetch, handler and produce call), result
to audit (the second's). The load curve raises the offered load until the chain no
longer keeps up; its knee is the highest load the chain still carries with a
bounded tail (`knee`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Attack, attack
from bench.measure import percentile, read

STEPS = ("post_to_request", "request_to_result", "result_to_audit")
LOG_APPEND_TIME = 1  # aiokafka's timestamp_type of a broker-stamped record
KEPT_UP = 0.99  # share of requests whose audit arrives within the grace
KNEE_TAIL = 3.0  # p99 at the knee stays within this many times the lowest rate's
SENT = 0.95  # share of the offered load that must leave the generator
QUEUED_MS = 1000.0  # a median past this in a run of seconds means a growing queue


@dataclass
class Chain:
    url: str  # the first service's POST endpoint
    bootstrap: str
    hops: list[str]  # request, result and audit topics


def body(key: str) -> dict[str, str]:
    return {"company_name": key, "industry": "Bench"}


def broker_stamps(bootstrap: str, topic: str, keys: set[str], timeout: float) -> dict[str, float]:
    """Each key's broker timestamp in `topic` (ms); refuses a record its producer stamped."""
    found: dict[str, float] = {}

    def seen(record: Any) -> None:
        if record.timestamp_type != LOG_APPEND_TIME:
            raise RuntimeError(f"{topic} is not stamped by the broker (LogAppendTime)")
        key = record.key.decode()
        if key in keys:
            found.setdefault(key, float(record.timestamp))

    asyncio.run(read(bootstrap, topic, 0, timeout, seen, done=lambda: keys <= found.keys()))
    return found


def run(
    chain: Chain, rate: int, seconds: float, workdir: Path, grace: float = 30
) -> dict[str, Any]:
    """`rate` requests/s for `seconds`: p50/p95/p99 to the audit, each step, the generator."""
    load = attack(chain.url, body, rate, seconds, workdir)
    return figures(load, chain, grace)


def figures(load: Attack, chain: Chain, grace: float) -> dict[str, Any]:
    keys = set(load.answered)
    audited = broker_stamps(chain.bootstrap, chain.hops[-1], keys, grace)
    arrived = set(audited)  # the earlier records of these are in Kafka already
    way: list[dict[str, float]] = [
        load.due,
        *(broker_stamps(chain.bootstrap, topic, arrived, 30) for topic in chain.hops[:-1]),
        audited,
    ]
    whole = sorted(float(audited[key] - load.due[key]) for key in arrived)
    complete = [key for key in arrived if all(key in stamps for stamps in way)]
    split = (
        {
            f"p{p}_{step}": percentile(sorted(float(end[k] - start[k]) for k in complete), p)
            for step, start, end in zip(STEPS, way[:-1], way[1:], strict=True)
            for p in (50, 99)
        }
        if complete
        else {}
    )
    http = sorted(load.answered[key] - load.due[key] for key in keys)
    return {
        "sent": len(load.due),
        "answered": len(keys),
        "received": len(whole),
        "kept_up": round(len(whole) / max(len(load.due), 1), 4),
        **({f"p{p}": percentile(whole, p) for p in (50, 95, 99)} if whole else {}),
        **({"http_p99": round(percentile(http, 99), 1)} if http else {}),
        **{f"split_{step}": ms for step, ms in split.items()},
        **load.figures(),
    }


def saturated(point: dict[str, Any]) -> bool:
    """The chain no longer keeps up: the load did not all leave (the generator waited on
    the chain's connections, or lacked CPU), audits are missing past the grace, errors
    pass 1 %, or a queue builds (the median request waits over QUEUED_MS)."""
    return bool(
        point["sent_rps"] < SENT * point["offered_rps"]
        or point["kept_up"] < KEPT_UP
        or point["errors"] > 0.01 * point["sent"]
        or point.get("p50", float("inf")) > QUEUED_MS
    )


def curve(
    chain: Chain, rates: list[int], seconds: float, workdir: Path, ceiling: int
) -> list[dict[str, Any]]:
    """The listed rates, then doubling past them until the chain saturates (or `ceiling`)."""
    points: list[dict[str, Any]] = []
    rate_list = list(rates)
    while rate_list:
        rate = rate_list.pop(0)
        point = {"offered_rps": rate, **run(chain, rate, seconds, workdir, grace=20)}
        points.append(point)
        if saturated(point) and rate >= rates[-1]:
            break
        if not rate_list and not saturated(point) and rate * 2 <= ceiling:
            rate_list.append(rate * 2)
    return points


def knee(points: list[dict[str, Any]]) -> int:
    """The highest offered load the chain keeps up with while its p99 stays within
    KNEE_TAIL times its p99 at the lowest load; 0 when even that is missed."""
    if not points or saturated(points[0]) or "p99" not in points[0]:
        return 0
    bound = KNEE_TAIL * max(points[0]["p99"], 1.0)
    best = 0
    for point in points:
        if saturated(point) or point.get("p99", float("inf")) > bound:
            break
        best = point["offered_rps"]
    return best


def plot(curves: dict[str, list[dict[str, Any]]], knees: dict[str, int], path: Path) -> None:
    """p50 and p99 against offered load, one colour per chain, log-log; knees dotted,
    saturated points crossed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for (label, points), colour in zip(curves.items(), ("tab:blue", "tab:orange"), strict=False):
        kept = [p for p in points if "p99" in p]
        rates = [p["offered_rps"] for p in kept]
        axes.plot(rates, [p["p50"] for p in kept], "o--", color=colour, label=f"{label} p50")
        axes.plot(rates, [p["p99"] for p in kept], "s-", color=colour, label=f"{label} p99")
        past = [p for p in kept if saturated(p)]
        axes.plot(
            [p["offered_rps"] for p in past],
            [p["p99"] for p in past],
            "x",
            color="black",
            label="saturated" if past and colour == "tab:blue" else None,
        )
        if knees.get(label):
            axes.axvline(knees[label], color=colour, linestyle=":", linewidth=1)
    axes.set_xscale("log", base=2)
    offered = sorted({p["offered_rps"] for points in curves.values() for p in points})
    axes.set_xticks(offered, [str(rate) for rate in offered])
    axes.minorticks_off()
    axes.set_yscale("log")
    axes.set_xlabel("offered load (requests/s, open loop)")
    axes.set_ylabel("POST until the audit is in Kafka (ms)")
    axes.set_title("Latency against offered load (dotted: each chain's knee)", fontsize="medium")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=path.suffix.lstrip(".") or "svg", metadata={"Date": None})
    plt.close(figure)
