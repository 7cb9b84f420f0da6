"""Kong's configuration: the base merged with every service's snippet, validated by decK.

Natively decK comes from the build cache; with Docker, from decK's image.
Loading the result into a running (Docker) Kong goes through its admin API.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from platform_deploy.discovery import REPO, discover
from platform_native.servers import run_deck

DeckRunner = Callable[..., Any]


def _deck_runner(command: Sequence[str] | None) -> DeckRunner:
    """decK from the cache (native) or from a given command (its Docker image)."""
    if command is None:
        return run_deck

    def run(*deck_args: str) -> Any:
        full = [*command, *deck_args, "--analytics=false"]
        return subprocess.run(full, check=True, cwd=REPO)

    return run


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def merge_and_validate(
    services_dir: Path, base: Path, out: Path, deck: Sequence[str] | None = None
) -> list[str]:
    """Merge and validate into ``out``; return report lines (the last: changed or not).

    The caller reloads Kong only when the file changed.
    """
    snippets = [str(i.kong_snippet) for i in discover(services_dir) if i.kong_snippet]
    before = _digest(out)
    merged = out.with_name(f".{out.name}.tmp")
    run = _deck_runner(deck)
    run("file", "merge", "-o", str(merged), str(base), *snippets)
    run("file", "validate", str(merged))
    os.replace(merged, out)
    changed = _digest(out) != before
    return [
        f"kong: {len(snippets)} snippets merged and validated into {out}",
        "kong: changed" if changed else "kong: unchanged",
    ]


def load(admin: str, config: Path) -> tuple[bool, str]:
    """Load the merged config into a running DB-less Kong through its admin API.

    `check_hash=1` makes Kong answer 304 and keep its state when the config is
    unchanged, so a second `up` changes nothing.
    """
    import httpx

    with config.open("rb") as handle:
        response = httpx.post(
            f"{admin}/config",
            params={"check_hash": "1"},
            files={"config": (config.name, handle, "application/x-yaml")},
            timeout=30,
        )
    if response.status_code not in (200, 201, 304):
        return False, f"kong: {response.status_code} {response.text}"
    return True, "kong: config unchanged" if response.status_code == 304 else "kong: config loaded"
