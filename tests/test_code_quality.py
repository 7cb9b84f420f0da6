"""The repository's own Python is linted, formatted and typed strictly, like the services.

The chassis checks itself (tests/test_chassis.py) and each rendered service too
(tests/test_template.py); this covers the rest: infrastructure, tests and bench.
"""

from __future__ import annotations

import sys

from .rendering import REPO, mypy_env, run

PYTHON = sys.executable
OWN_CODE = ["infrastructure", "tests", "bench"]


def test_ruff() -> None:
    run([PYTHON, "-m", "ruff", "check", *OWN_CODE], REPO)
    run([PYTHON, "-m", "ruff", "format", "--check", *OWN_CODE], REPO)


def test_mypy_strict() -> None:
    run([PYTHON, "-m", "mypy"], REPO, env=mypy_env("repository"))  # files, options: mypy.ini
