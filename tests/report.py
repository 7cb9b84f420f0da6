"""What the reliability and security tests measured, as a report of one run.

A test calls `record(name, claim, passed, **figures)` with what it observed.
The row's verdict is the test's own outcome: a test that fails after (or
before) recording gets a failing row, so a report never shows "pass" for a
check that did not pass, and a row that did not run is absent (nothing is
carried over from earlier runs). Every run writes `reports/reliability.{json,md}`
(ignored by git); only `make report`, which runs the whole reliability suite once,
writes them to docs/ (`RELIABILITY_REPORT_DIR`). The report names the commit, the
chassis version, the date and the run.

This module is a pytest plugin (see conftest.py's `pytest_plugins`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.provenance import chassis_release, commit

REPO = Path(__file__).resolve().parents[1]
REAL_SERVERS = {"infra", "reliability"}


@dataclass
class Row:
    claim: str
    passed: bool
    figures: dict[str, Any]
    test: str
    real_servers: bool


@dataclass
class Run:
    rows: dict[str, Row] = field(default_factory=dict)
    current: pytest.Item | None = None


_run = Run()


def record(name: str, claim: str, passed: bool = True, **figures: Any) -> None:
    """Remember one result of the running test: the claim it checks and what it saw."""
    item = _run.current
    assert item is not None, "record() is called from inside a test"
    real = any(item.get_closest_marker(marker) for marker in REAL_SERVERS)
    _run.rows[name] = Row(claim, passed, figures, item.nodeid, real)


def pytest_runtest_setup(item: pytest.Item) -> None:
    _run.current = item


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Fail the rows of a test that failed, or add one if it failed before recording."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    mine = [row for row in _run.rows.values() if row.test == item.nodeid]
    for row in mine:
        row.passed = False
    if not mine and any(item.get_closest_marker(marker) for marker in REAL_SERVERS):
        doc = item.function.__doc__ if isinstance(item, pytest.Function) else None
        claim = (doc or item.name).strip().splitlines()[0]
        error = str(report.longrepr).splitlines()[-1][:300] if report.longrepr else ""
        _run.rows[item.nodeid] = Row(
            claim, False, {f"failed in {report.when}": error}, item.nodeid, True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under pytest-xdist (make test, make test-fast) each worker holds only its own rows:
    # none is written.
    if _run.rows and not hasattr(session.config, "workerinput"):
        write(Path(os.environ.get("RELIABILITY_REPORT_DIR", REPO / "reports")))


def provenance() -> dict[str, str]:
    return {
        "run": uuid.uuid4().hex[:12],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "chassis_version": chassis_release(),
    }


def write(folder: Path) -> None:
    """This run's rows, and nothing else, as JSON and Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        **provenance(),
        "rows": {
            name: {
                "claim": row.claim,
                "passed": row.passed,
                "real_servers": row.real_servers,
                "test": row.test,
                "figures": row.figures,
            }
            for name, row in sorted(_run.rows.items())
        },
    }
    (folder / "reliability.json").write_text(json.dumps(document, indent=2) + "\n")
    (folder / "reliability.md").write_text(render(document))


def render(document: dict[str, Any]) -> str:
    lines = [
        "# Reliability",
        "",
        f"One run of the reliability and security tests (`make report`): run {document['run']}, "
        f"{document['measured_at']}, commit `{document['commit']}`, event-chassis "
        f"{document['chassis_version']}. Nothing in this file is typed by hand; "
        "docs/reliability.json has the same rows.",
        "",
    ]
    sections = (
        (
            "Against the real servers",
            "Kafka, Consul, Jaeger and Prometheus started by the tests",
            True,
        ),
        ("Static checks", "on the files and the code, no server", False),
    )
    for title, what, real in sections:
        rows = {name: row for name, row in document["rows"].items() if row["real_servers"] is real}
        if not rows:
            continue
        lines += [
            f"## {title}",
            "",
            f"({what})",
            "",
            "| Check | Claim | Result | Figures |",
            "|---|---|---|---|",
        ]
        for name, row in rows.items():
            figures = ", ".join(f"{key}={value}" for key, value in row["figures"].items())
            verdict = "pass" if row["passed"] else "FAIL"
            lines.append(f"| `{name}` | {row['claim']} | {verdict} | {figures} |")
        lines.append("")
    return "\n".join(lines)
