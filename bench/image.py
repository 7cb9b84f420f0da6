"""The service's image for `make bench`: its size, built as its CI workflow builds it.

A private dockerd and the stand-in base image (tests.harness.docker; images
cannot be pulled here), the chassis wheel served to the build, and the build
step of the service's own CI workflow (tests/docker_harness.py). The size is
`docker image inspect`'s: uncompressed, every layer; the base is the stand-in
for python:3.11-slim-bookworm, so the layers above it are what the service adds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from platform_deploy import wheelhouse
from tests.docker_harness import Docker, build_like_ci
from tests.harness.docker import engine, standin
from tests.harness.docker.engine import DockerEngine
from tests.rendering import wheelhouse as built_wheels

MB = 1e6


def measure(service: Path) -> dict[str, Any]:
    """Build `service`'s image; its size, its base's, and the build's seconds."""
    reason = engine.unavailable_reason()
    if reason is not None:
        return {"not_measured": f"needs a private dockerd, and {reason}"}
    engine.ensure_installed()
    private = DockerEngine().start()
    try:
        base = standin.ensure(private)
        with wheelhouse.serve(built_wheels()) as url:
            docker = Docker(private, base, url)
            started = time.monotonic()
            tag = build_like_ci(docker, service, "bench")
            seconds = time.monotonic() - started
            size = int(docker.inspect("image", tag)["Size"])
            base_size = int(docker.inspect("image", base)["Size"])
    finally:
        private.stop()
    return {
        "image_mb": round(size / MB, 1),
        "base_image": f"{base} (the stand-in built here from Debian packages)",
        "base_mb": round(base_size / MB, 1),
        "service_layers_mb": round((size - base_size) / MB, 1),
        "build_s": round(seconds, 1),
        "storage_driver": private.storage_driver,
    }
