"""The chassis wheel built here, served to image builds as pip's ``--find-links``.

A service's Dockerfile installs the event-chassis with pip's usual settings
(its build stage takes ``PIP_FIND_LINKS`` and the other PIP_* variables as
build arguments). The chassis built from chassis/ (``make wheels``) is on no
index, so ./deploy-all.sh and the tests serve the ``.wheels`` folder over HTTP
on loopback while the images build with ``--network host``; pip reads the
folder's listing for the wheel and gets everything else from its index.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from platform_native.processes import HOST


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without a line on stderr per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free loopback port while the block runs; yield its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer((HOST, 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
        thread.start()
        try:
            yield f"http://{HOST}:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


def find_links(url: str, environ: dict[str, str] | None = None) -> str:
    """``url`` first, then whatever PIP_FIND_LINKS already holds."""
    current = (os.environ if environ is None else environ).get("PIP_FIND_LINKS", "")
    return f"{url} {current}".strip()


def run_with_wheels(folder: Path, command: Sequence[str]) -> int:
    """Run ``command`` with ``folder`` served and named in PIP_FIND_LINKS; its exit code."""
    with serve(folder) as url:
        env = {**os.environ, "PIP_FIND_LINKS": find_links(url)}
        return subprocess.run(list(command), env=env, check=False).returncode
