"""Render services from the template and install them, as a new user would."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cookiecutter.main import cookiecutter

from platform_deploy.new import chassis_requirement
from platform_native import installer, services, versions

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".wheels"
# A folder the conftest makes for one test session, shared by its workers: each set of
# answers is rendered once into it, and render() copies from there.
RENDERS = "EVENT_PLATFORM_TEST_RENDERS"


def wheelhouse() -> Path:
    """The folder holding the chassis wheel built from chassis/ (`make wheels`, if stale)."""
    subprocess.run(["make", "-s", "-C", str(REPO), "wheels"], check=True, timeout=600)
    return WHEELS


def render(output_dir: Path, **answers: str) -> Path:
    """Run cookiecutter without prompts; returns the generated service's directory.

    The chassis by range, as for the services under services/ (`./deploy-all.sh new`), so
    the wheel in .wheels serves it to virtualenvs and image builds alike; a service that
    derives its git reference is tests/test_install_anywhere.py's.

    In a session whose conftest set RENDERS, the service is a copy of the session's one
    rendering with the same answers: the output depends on nothing else (the template
    does not change during a session), and a rendering took 2.6 s, most of it the
    contract's generation.
    """
    answers = {"chassis_requirement": chassis_requirement(), **answers}
    shared = os.environ.get(RENDERS)
    if not shared:
        return _cookiecutter(output_dir, answers)
    key = hashlib.sha256(json.dumps(answers, sort_keys=True).encode()).hexdigest()[:16]
    rendered = Path(shared) / key
    with (Path(shared) / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be rendering the same
        if not rendered.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=shared))
            _cookiecutter(staging, answers)
            staging.rename(rendered)
    [service] = list(rendered.iterdir())
    return Path(shutil.copytree(service, output_dir / service.name, symlinks=True))


def _cookiecutter(output_dir: Path, answers: dict[str, str]) -> Path:
    return Path(
        cookiecutter(str(REPO), no_input=True, output_dir=str(output_dir), extra_context=answers)
    )


def run_cookiecutter_cli(
    output_dir: Path, *answers: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `cookiecutter` command itself, for checking its exit code and messages."""
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(output_dir)]
    return subprocess.run(
        [*command, str(REPO), *answers], capture_output=True, text=True, timeout=120, env=env
    )


def install(service: Path, *wheels: Path) -> Path:
    """A fresh virtualenv with the newest versions the service's ranges allow.

    `wheels`: more folders of wheels to look in first (a newer chassis, say).
    """
    python = installer.create_venv(service / ".venv")
    links = [*wheels, wheelhouse()]
    installer.install(python, "-e", f"{service}[dev]", find_links=links, upgrade=True)
    return python


def install_services(directories: list[Path]) -> list[Path]:
    """Install rendered services side by side (their console scripts, in order).

    Each install waits on the index for part of its 3 s, so two or three at once take
    little longer than one.
    """
    wheels = wheelhouse()
    with ThreadPoolExecutor(max_workers=len(directories) or 1) as pool:
        return list(pool.map(lambda d: services.install(d, wheels=wheels), directories))


def mypy_env(name: str) -> dict[str, str]:
    """The environment for a mypy run whose cache, named ``name``, outlives the clone (as
    CI keeps one): mypy rechecks a module whose path or contents changed, reuses the rest
    (the libraries, mostly), so a run in a fresh clone takes a second, not half a minute."""
    return {**os.environ, "MYPY_CACHE_DIR": str(versions.cache_dir() / "mypy" / name)}


def run(
    command: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> str:
    """Run a command; on failure, fail with its whole output."""
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**(env or os.environ), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}) in {cwd}:\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result.stdout


@dataclass
class Installed:
    """A service rendered with the default answers and installed: what tests start."""

    info: services.ServiceInfo
    script: Path
    root: Path


def render_and_install(root: Path) -> Installed:
    """Render the default service into ``root`` and install it with the chassis wheel."""
    info = services.ServiceInfo.read(render(root))
    return Installed(info, services.install(info.directory, wheels=wheelhouse()), root)


def all_passed(output: str) -> bool:
    """Whether pytest's summary, its last line, counts passed tests and no failure or
    error (a test's own name may say "failed": only the summary is read)."""
    last = ([line for line in output.splitlines() if line.strip()] or [""])[-1]
    return " passed" in last and not re.search(r"\d+ (failed|errors?)\b", last)
