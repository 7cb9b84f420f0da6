"""Figures the reliability tests measure, written to docs/reliability.md.

A test calls `record(...)` with what it observed; at the end of the session
the figures are merged into docs/reliability.json (so running one test
updates only its own row) and docs/reliability.md is rendered from that.
Nothing in the documents is typed by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"
_results: dict[str, dict[str, Any]] = {}


def record(name: str, claim: str, passed: bool = True, **figures: Any) -> None:
    """Remember one result: the claim the test checks and the numbers it saw."""
    _results[name] = {"claim": claim, "passed": passed, "figures": figures}


def write(docs: Path = DOCS) -> None:
    """Merge this session's results into the JSON and render the Markdown."""
    if not _results:
        return
    docs.mkdir(exist_ok=True)
    json_path = docs / "reliability.json"
    merged: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for name, result in _results.items():
        merged[name] = {**result, "measured_at": stamp}
    json_path.write_text(json.dumps(dict(sorted(merged.items())), indent=2) + "\n")
    (docs / "reliability.md").write_text(render(merged))


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Reliability",
        "",
        "Written by the `reliability` tests (`make test`) from what they measured",
        "against the real Kafka, Consul and Jaeger; see docs/reliability.json.",
        "",
        "| Test | Claim | Result | Figures | Measured |",
        "|---|---|---|---|---|",
    ]
    for name, result in sorted(results.items()):
        figures = ", ".join(f"{key}={value}" for key, value in result["figures"].items())
        verdict = "pass" if result["passed"] else "FAIL"
        lines.append(
            f"| `{name}` | {result['claim']} | {verdict} | {figures} | {result['measured_at']} |"
        )
    return "\n".join(lines) + "\n"
