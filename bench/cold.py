"""`make cold-test`: how long `make test` takes on a machine with nothing cached.

Clones this repository's HEAD into a scratch folder and runs `make test` there with every
cache private and empty: the platform's build cache (PLATFORM_CACHE_DIR: the servers, the
tools, the stand-in base image), Go's module and build caches, Maven's repository and
pip's cache. Only what a machine has before a session (Python, Java, Maven, Go, Debian's
packages already installed) is shared. Prints `make test`'s own progress lines as they
come; writes docs/cold-test.{md,json} (COLD_OUTPUT moves them): the commit (a clone has no
uncommitted change) and its chassis version, the total, the time of each build `make test`
reported, and the tests' summary line.
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

REPO = Path(__file__).resolve().parents[1]
BUDGET_MINUTES = 45  # the project's limit for a cold `make test` (CI allows 90)
# What platform_native.build prints when a build ends: "    built consul 1.21.0 in 3m09s".
BUILT = re.compile(r"^\s+built (?P<what>.+) in (?P<took>\S+)$")


def private_caches(root: Path) -> dict[str, str]:
    return {
        "PLATFORM_CACHE_DIR": str(root / "platform"),
        "GOMODCACHE": str(root / "go" / "mod"),
        "GOCACHE": str(root / "go" / "build"),
        "GOPATH": str(root / "go" / "path"),
        "MAVEN_OPTS": f"-Dmaven.repo.local={root / 'maven'}",
        "PIP_CACHE_DIR": str(root / "pip"),
    }


def main() -> int:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="cold-test-") as scratch:
        root = Path(scratch)
        clone = root / "main"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        chassis = tomllib.loads((clone / "chassis" / "pyproject.toml").read_text())["project"]
        (root / "shared").symlink_to(REPO.parent / "shared")  # ../shared, as CI has it
        env = {**os.environ, **private_caches(root / "caches")}
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
                print(f"[{(time.monotonic() - started) / 60:5.1f} min] {line}", end="", flush=True)
        total = time.monotonic() - started
    summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line), "")
    builds = [match.groupdict() for line in lines if (match := BUILT.search(line))]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "chassis_version": chassis["version"],
        "cpus": os.cpu_count(),
        "exit_code": make.returncode,
        "total_minutes": round(total / 60, 1),
        "budget_minutes": BUDGET_MINUTES,
        "tests": summary.strip("= "),
        "builds": builds,
    }
    out = Path(os.environ.get("COLD_OUTPUT", REPO / "docs"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold-test.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {build['what']} | {build['took']} |" for build in builds)
    (out / "cold-test.md").write_text(
        f"# A cold `make test`\n\nWritten by `make cold-test` at {result['measured_at']} from "
        f"commit `{commit}` (event-chassis {result['chassis_version']}) on {result['cpus']} "
        "CPUs: a fresh clone, every cache private and "
        f"empty (servers, tools, Go modules and builds, Maven, pip).\n\n"
        f"**{result['total_minutes']} minutes** (budget {BUDGET_MINUTES}); exit code "
        f"{make.returncode}; {result['tests']}.\n\n| built | time |\n|---|---|\n"
        f"{rows}\n"
    )
    return 0 if make.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
