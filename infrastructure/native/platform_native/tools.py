"""Running a command-line check (promtool, consul validate, deck, jaeger validate)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

TOOL_TIMEOUT = 120.0  # seconds for one run of an already built tool


class ToolError(RuntimeError):
    """A command-line tool failed; the message has its command line and output."""


def run_tool(
    cmd: Sequence[str], check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; with ``check``, raise ToolError (with its output) when it fails."""
    result = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False, env=env
    )
    if check and result.returncode != 0:
        output = result.stdout + result.stderr
        raise ToolError(f"command failed (exit {result.returncode}): {' '.join(cmd)}\n{output}")
    return result
