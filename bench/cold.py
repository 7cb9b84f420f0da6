"""`make cold-test`: how long `make test` takes on a machine with nothing cached, then warm.

Clones this repository's HEAD into a scratch folder and runs `make test` there with every
cache private and empty: the platform's build cache (PLATFORM_CACHE_DIR: the servers, the
tools, the stand-in base image), Go's module and build caches, Maven's repository, and
pip's and uv's caches. Only what a machine has before a session (Python, Java, Maven, Go,
Debian's packages already installed) is shared. Prints `make test`'s own progress lines as they
come. Then clones HEAD again and runs `make test` with the caches the first run filled: the
warm figure, as CI has it. Writes docs/cold-test.{md,json} (COLD_OUTPUT moves them): the
commit (a clone has no uncommitted change) and its chassis version, each run's total
against its budget, the time of each build the cold run reported, and the tests' summary
lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET = {"cold": 45, "warm": 15}  # the project's limits for `make test`, minutes (CI allows 90)
# What platform_native.build prints when a build ends: "    built consul 1.21.0 in 3m09s".
BUILT = re.compile(r"^\s+built (?P<what>.+) in (?P<took>\S+)$")
SUMMARY = re.compile(r"^=+ .*\b(passed|failed|error|no tests ran)\b.* in [0-9.]+s")


def private_caches(root: Path) -> dict[str, str]:
    return {
        "PLATFORM_CACHE_DIR": str(root / "platform"),
        "GOMODCACHE": str(root / "go" / "mod"),
        "GOCACHE": str(root / "go" / "build"),
        "GOPATH": str(root / "go" / "path"),
        "MAVEN_OPTS": f"-Dmaven.repo.local={root / 'maven'}",
        "PIP_CACHE_DIR": str(root / "pip"),
        "UV_CACHE_DIR": str(root / "uv"),
    }


def make_test(clone: Path, env: dict[str, str], label: str) -> dict[str, Any]:
    """`make test` in `clone`, its lines printed as they come: minutes, exit code, lines."""
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        ["make", "test"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as make:
        assert make.stdout is not None
        for line in make.stdout:
            lines.append(line.rstrip("\n"))
            print(
                f"[{label} {(time.monotonic() - started) / 60:5.1f} min] {line}", end="", flush=True
            )
    return {
        "minutes": round((time.monotonic() - started) / 60, 1),
        "exit_code": make.returncode,
        # `make test` runs pytest twice (the solo tests, then modules in parallel)
        "tests": [line.strip("= ") for line in lines if SUMMARY.search(line)],
        "builds": [match.groupdict() for line in lines if (match := BUILT.search(line))],
    }


def main() -> int:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="cold-test-") as scratch:
        root = Path(scratch)
        (root / "shared").symlink_to(REPO.parent / "shared")  # ../shared, as CI has it
        env = {**os.environ, **private_caches(root / "caches")}
        runs = {}
        for kind in ("cold", "warm"):  # warm: a fresh clone again, with the caches the first filled
            clone = root / f"main-{kind}"
            subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
            # Both runs test the commit named in the report, even if HEAD moved meanwhile.
            subprocess.run(
                ["git", "-C", str(clone), "reset", "--quiet", "--hard", commit], check=True
            )
            runs[kind] = make_test(clone, env, kind)
        chassis = tomllib.loads((clone / "chassis" / "pyproject.toml").read_text())["project"]
    cold, warm = runs["cold"], runs["warm"]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "chassis_version": chassis["version"],
        "cpus": os.cpu_count(),
        "budget_minutes": BUDGET,
        **runs,
    }
    out = Path(os.environ.get("COLD_OUTPUT", REPO / "docs"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold-test.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {build['what']} | {build['took']} |" for build in cold["builds"])
    table = "\n".join(
        f"| {kind} | **{run['minutes']} min** | {BUDGET[kind]} min | "
        f"{'within' if run['minutes'] <= BUDGET[kind] else '**over**'} | {run['exit_code']} | "
        f"{'; '.join(run['tests'])} |"
        for kind, run in runs.items()
    )
    (out / "cold-test.md").write_text(
        f"# A cold and a warm `make test`\n\nWritten by `make cold-test` at "
        f"{result['measured_at']} from commit `{commit}` (event-chassis "
        f"{result['chassis_version']}) on {result['cpus']} CPUs. Cold: a fresh clone, every "
        "cache private and empty (servers, tools, Go modules and builds, Maven, pip, uv). Warm: "
        "another fresh clone right after, with the caches the cold run filled (what CI "
        "does on a machine that has run it before).\n\n"
        "| run | time | budget | | exit code | tests |\n|---|---|---|---|---|---|\n"
        f"{table}\n\nWhat the cold run built:\n\n| built | time |\n|---|---|\n{rows}\n"
    )
    return 0 if cold["exit_code"] == warm["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
