"""The container harness: a private Docker engine for the session (marker `docker`).

On first use it installs Debian's docker.io if missing, starts a private dockerd
(tests.harness.docker.engine: own socket and folders, vfs, no iptables, no
bridge, stopped at the end also on failure), loads the stand-in for the
official python:3.11-slim-bookworm base image (tests.harness.docker.standin,
debootstrap'd once per Debian snapshot and cached with `docker save`) and links
Docker Compose, built from its Go module, in as a CLI plugin. The chassis wheel
(`make wheels`) is served on loopback for the session, so every image build
finds it as PIP_FIND_LINKS, as ./deploy-all.sh does. Only a machine that truly
cannot run dockerd (not Linux, not root) skips these tests, with one line.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from platform_deploy import wheelhouse
from platform_native import progress
from tests.harness.docker import compose, engine, standin
from tests.harness.docker.engine import DockerEngine

from .rendering import REPO
from .rendering import wheelhouse as built_wheels

REPORTS = REPO / "reports"
BUILD_TIMEOUT = 1800.0  # one image on vfs with two shared cores: minutes, not hours


@dataclass
class Docker:
    """The session's engine, its stand-in base image and the served chassis wheels."""

    engine: DockerEngine
    base_image: str
    wheels_url: str

    def __call__(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        """Run ``docker <args>`` against the private engine (see DockerEngine.docker)."""
        return self.engine.docker(*args, **options)

    def build_env(self) -> dict[str, str]:
        """The docker CLI's environment plus pip's settings for an image's build stage."""
        return {
            **self.engine.cli_env(),
            "PIP_FIND_LINKS": self.wheels_url,
            "PIP_CERT": standin.PIP_CERT,
        }

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        """``docker <kind> inspect`` of one object, as a dict."""
        [found] = json.loads(self(kind, "inspect", name).stdout)
        return dict(found)

    def logs(self, container: str, since: str = "") -> list[str]:
        """The lines the container wrote (stdout and stderr), all or ``since`` a time."""
        result = self("logs", *(["--since", since] if since else []), container)
        return (result.stdout + result.stderr).splitlines()


def shown(request: pytest.FixtureRequest) -> AbstractContextManager[None]:
    """Let progress lines through pytest's capture (a fixture's long step shows signs of life)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    return cast(AbstractContextManager[None], capture.global_and_fixture_disabled())


@pytest.fixture(scope="session")
def docker(request: pytest.FixtureRequest) -> Iterator[Docker]:
    reason = engine.unavailable_reason()
    if reason is not None:
        pytest.skip(f"docker tests need a private dockerd, and {reason}")
    started = time.monotonic()
    with shown(request):
        progress.say("\n==> the container harness (a private dockerd, the stand-in base image)")
        engine.ensure_installed()
        private = DockerEngine(compose.build_plugins())
        private.start()
    try:
        with shown(request):
            base = standin.ensure(private)
            took = progress.elapsed(time.monotonic() - started)
            progress.say(f"    {base} (stand-in) ready in {took}")
        with wheelhouse.serve(built_wheels()) as url:
            yield Docker(private, base, url)
    finally:
        private.stop()


# ------------------------------------------------------------- the CI's build step


def ci_build_step(service: Path) -> dict[str, Any]:
    """The step of the service's CI workflow that builds its image."""
    workflow = yaml.safe_load((service / ".github" / "workflows" / "ci.yml").read_text())
    steps = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "docker build" in step.get("run", "")
    ]
    assert len(steps) == 1, f"expected one docker build step in the CI workflow: {steps}"
    return dict(steps[0])


def build_like_ci(docker: Docker, service: Path, label: str) -> str:
    """Build the service's image by running its CI workflow's build step; return the tag.

    The step runs as GitHub runs it (bash -eo pipefail, in the checkout) with
    pip's settings from the environment: here the served chassis wheel and
    the stand-in's CA bundle. ``label`` plays GITHUB_SHA, so it ends the tag.
    """
    step = ci_build_step(service)
    env = {
        **docker.build_env(),
        **{name: "" for name in step.get("env", {})},  # repository variables left unset
        "GITHUB_SHA": label,
    }
    started = time.monotonic()
    with progress.heartbeat(f"building the image of {service.name} ({label})"):
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=service,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    assert result.returncode == 0, (
        f"{step['run']}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    )
    tags = [
        line.split()[-1] for line in result.stdout.splitlines() if "Successfully tagged" in line
    ]
    assert tags, result.stdout[-3000:]
    record_image(docker, tags[-1], seconds=time.monotonic() - started)
    return tags[-1]


def record_image(docker: Docker, tag: str, seconds: float) -> None:
    """Write the image's size and build time to reports/docker-images.json (not tracked)."""
    size = int(docker.inspect("image", tag)["Size"])
    base = int(docker.inspect("image", docker.base_image)["Size"])
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / "docker-images.json"
    images = json.loads(path.read_text()) if path.exists() else {}
    images[tag] = {
        "size_bytes": size,
        "base_image": f"{docker.base_image} (stand-in)",
        "base_size_bytes": base,
        "service_layers_bytes": size - base,
        "build_seconds": round(seconds, 1),
        "measured": "docker image inspect .Size (uncompressed, all layers)",
    }
    path.write_text(json.dumps(images, indent=2) + "\n")
    progress.say(f"    {tag}: {size / 1e6:.1f} MB ({(size - base) / 1e6:.1f} MB above the base)")


# ------------------------------------------------------------------- containers


def error_lines(lines: list[str]) -> list[str]:
    """The log lines at ERROR or CRITICAL (the services log JSON lines)."""
    found = []
    for line in lines:
        try:
            level = str(json.loads(line).get("level", "")).lower()
        except (ValueError, AttributeError):
            level = "error" if "Traceback" in line or " ERROR " in line else ""
        if level in {"error", "critical", "exception"}:
            found.append(line)
    return found


def env_args(env: dict[str, str]) -> list[str]:
    """``--env NAME=value`` for every entry (for docker run)."""
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
