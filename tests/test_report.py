"""The reliability report holds one run, with every check's real outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import REPO

CHECKS = '''
import pytest
from tests import report

pytestmark = pytest.mark.reliability


def test_holds() -> None:
    report.record("holds", "a claim that holds", True, seen=1)


def test_fails_after_recording() -> None:
    report.record("fails.late", "a claim whose check fails after it is recorded", True, seen=2)
    assert False, "the check after the record"


def test_fails_before_recording() -> None:
    """A claim whose test fails before it records anything."""
    assert False, "nothing recorded"
'''


def test_a_failing_check_is_a_failing_row_and_nothing_else_is_kept(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "reliability.json").write_text('{"rows": {"from.an.old.run": {}}}')
    pytester.makeini("[pytest]\nmarkers =\n    reliability: a reliability test\n")
    pytester.makepyfile(test_checks=CHECKS)
    monkeypatch.setenv("RELIABILITY_REPORT_DIR", str(reports))
    monkeypatch.setenv("PYTHONPATH", str(REPO))

    result = pytester.runpytest_subprocess("-p", "tests.report")

    result.assert_outcomes(passed=1, failed=2)
    document = json.loads((reports / "reliability.json").read_text())
    rows = document["rows"]
    assert rows["holds"]["passed"] is True
    assert rows["fails.late"]["passed"] is False
    assert rows["fails.late"]["figures"] == {"seen": 2}
    [early] = [row for name, row in rows.items() if name.endswith("test_fails_before_recording")]
    assert early["passed"] is False
    assert early["claim"] == "A claim whose test fails before it records anything."
    assert "from.an.old.run" not in rows
    assert {"run", "commit", "chassis_version", "measured_at"} <= set(document)
    assert "FAIL" in (reports / "reliability.md").read_text()
