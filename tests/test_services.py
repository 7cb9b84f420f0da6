"""The services shipped under services/ are exactly what the template renders today."""

from __future__ import annotations

import subprocess
import sys

from .rendering import REPO


def test_shipped_services_match_a_fresh_render() -> None:
    result = subprocess.run(
        [sys.executable, "infrastructure/render_services.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, (
        f"{result.stdout}\nRun `python infrastructure/render_services.py` to re-render."
    )
    assert "value-architect is up to date" in result.stdout
