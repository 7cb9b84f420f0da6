"""Each service's health as Consul sees it: wait until all pass, or report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from platform_deploy.discovery import discover
from platform_native import progress
from platform_native.services import passing_instances


def health(consul: str, names: list[str]) -> dict[str, str]:
    """``passing (n instance(s))``, ``not passing`` or ``unknown (...)`` per service."""
    found = {}
    for name in names:
        try:
            passing = passing_instances(consul, name)
        except OSError as error:
            found[name] = f"unknown (Consul unreachable: {error})"
            continue
        found[name] = f"passing ({len(passing)} instance(s))" if passing else "not passing"
    return found


def wait(services_dir: Path, consul: str, timeout: float) -> int:
    """Wait until every service has a passing instance; a line every ~15 s meanwhile."""
    names = [info.name for info in discover(services_dir)]
    deadline = time.monotonic() + timeout
    with progress.heartbeat("waiting for the services to pass in Consul"):
        while True:
            found = health(consul, names)
            waiting = [name for name, state in found.items() if not state.startswith("passing")]
            if not waiting:
                progress.say(f"    all {len(names)} services passing in Consul")
                return 0
            if time.monotonic() > deadline:
                for name in waiting:
                    print(f"{name}: {found[name]} after {timeout:.0f}s", file=sys.stderr)
                return 1
            time.sleep(1)


def status(services_dir: Path, consul: str) -> int:
    """Print each service's health in Consul; exit 1 when any is not passing."""
    found = health(consul, [info.name for info in discover(services_dir)])
    for name, state in found.items():
        print(f"{name:<30} {state}")
    return 0 if all(state.startswith("passing") for state in found.values()) else 1
