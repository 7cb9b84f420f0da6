"""Everything `make test` builds, built before pytest starts, one line per build.

pytest-xdist's workers print nothing to the terminal: the builds the conftest starts at
collection would, on a cold machine, run for many minutes without a line, and `make
cold-test`, which times each build from those lines, would find none. Run first, they print
here, and the workers find them in the cache. The exception is the stand-in base image: it
needs the private Docker engine, which only its tests start.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infrastructure" / "native"))

from platform_native import progress, versions
from platform_native.build import BUILDS_AT_ONCE, Build, build_many
from platform_native.servers import BUILDS
from tests.harness import actionlint, kubernetes
from tests.harness.docker import compose

TOOLS: dict[str, Build] = {
    "docker-compose": (compose.VERSION, compose.build_plugins),
    "actionlint": (actionlint.VERSION, actionlint.build_actionlint),
}


def main() -> None:
    pinned = versions.pinned_versions()
    servers = {name: (pinned[name], build) for name, build in BUILDS.items()}
    progress.say(
        f"==> building the servers and the test tools, {BUILDS_AT_ONCE} at a time "
        f"(cache: {versions.cache_dir()})"
    )
    # kube-apiserver first: the longest build should not be the one left running alone.
    build_many({**kubernetes.API_SERVER, **servers, **kubernetes.TOOLS, **TOOLS})


if __name__ == "__main__":
    main()
