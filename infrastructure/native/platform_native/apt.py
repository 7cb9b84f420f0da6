"""Debian packages the platform needs, installed with apt-get when it runs as root.

What cannot be built from the package registries comes from Debian: the Docker engine
for the tests that need one, PostgreSQL's server. apt-get waits for another apt-get's
lock rather than failing, and a failure's message ends with what apt-get printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence

from platform_native import progress


class AptError(RuntimeError):
    """The packages could not be installed; the message says why."""


def install(packages: Sequence[str]) -> None:
    """``apt-get update`` then ``apt-get install`` ``packages``, with progress lines."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise AptError(f"installing {' '.join(packages)} needs root and apt-get")
    started = time.monotonic()
    progress.say(f"    installing {' '.join(packages)} from Debian (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=600"]  # another apt-get may be running
    with progress.heartbeat(f"apt-get install {' '.join(packages)}"):
        for command in (
            ["apt-get", *wait_for_lock, "update"],
            ["apt-get", *wait_for_lock, "install", "-y", "--no-install-recommends", *packages],
        ):
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=1200, check=False
            )
            if result.returncode != 0:
                raise AptError(
                    f"{' '.join(command)} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
                )
    took = progress.elapsed(time.monotonic() - started)
    progress.say(f"    installed {' '.join(packages)} in {took}")
