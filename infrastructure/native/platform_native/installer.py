"""Virtualenvs and installs for services, made with uv (PyPI's ``uv`` wheel).

Why not pip: one service installed with pip took 16 s of CPU (3 s for the venv's own
pip, 13 s to resolve and unpack its ~60 packages); uv installs the same packages, bytecode
compiled, in about 4 s. ``./deploy-all.sh`` installs every service, and the tests install
dozens on two cores. The venvs still get pip (``--seed``) for a team's own use.

uv reads its own settings, not pip's: the folders in ``PIP_FIND_LINKS`` and an index in
``PIP_INDEX_URL`` are passed on to it, so an organisation's pip settings still apply.
It never downloads a Python: the venvs use the interpreter running this code. The rest
of platform_native needs only the standard library; this module needs the ``uv`` package,
which the repository's .venv has (requirements-dev.txt), where platform_deploy runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def pip_settings() -> list[str]:
    """pip's find-links and index from the environment, as uv's options."""
    options = [f"--find-links={folder}" for folder in os.environ.get("PIP_FIND_LINKS", "").split()]
    if index := os.environ.get("PIP_INDEX_URL"):
        options.append(f"--index-url={index}")
    return options


class InstallError(RuntimeError):
    """uv failed; the message ends with uv's own."""


def _uv(arguments: Sequence[str], timeout: float) -> None:
    try:
        from uv import find_uv_bin
    except ImportError as error:
        raise InstallError(f"{error}: pip install -r requirements-dev.txt") from error
    command = [find_uv_bin(), *arguments]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-6000:]
        raise InstallError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")


def create_venv(env_dir: Path) -> Path:
    """A new virtualenv (anything at ``env_dir`` replaced) with pip; returns its python."""
    _uv(["venv", "--quiet", "--seed", "--clear", f"--python={sys.executable}", str(env_dir)], 300)
    return env_dir / "bin" / "python"


def install(
    python: Path,
    *requirements: str,
    find_links: Sequence[Path] = (),
    upgrade: bool = False,
    no_deps: bool = False,
    reinstall: bool = False,
) -> None:
    """``pip install`` into ``python``'s venv, bytecode compiled; ``find_links`` are
    folders of wheels looked in besides the index."""
    options = [f"--find-links={folder}" for folder in find_links] + pip_settings()
    options += ["--upgrade"] * upgrade + ["--no-deps"] * no_deps + ["--reinstall"] * reinstall
    arguments = ["pip", "install", "--quiet", "--compile-bytecode", f"--python={python}"]
    _uv([*arguments, *options, *requirements], 900)
