"""The local alert receiver (infrastructure/alertmanager/alert_log.py) as a native server.

Alertmanager's receivers post to it; it appends every alert to
``<workdir>/alerts.jsonl``. It is a standard-library script, so there is
nothing to build: it runs with the Python that runs platform_native.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from platform_native import configs
from platform_native.probes import http_get
from platform_native.processes import HOST
from platform_native.servers.loopback_http import LoopbackHttpServer


class AlertLog(LoopbackHttpServer):
    """Alertmanager's webhook receiver, writing a JSON lines file in its work dir."""

    name = "alert-log"
    version = "1"  # part of this repository; no release of its own

    def __init__(self, workdir: Path | str, *, detach: bool = False) -> None:
        super().__init__(workdir, detach=detach)
        self.out_path = self.workdir / "alerts.jsonl"

    @classmethod
    def build(cls) -> Path:
        return configs.ALERT_LOG_SCRIPT

    def addresses(self) -> dict[str, str]:
        return {"url": self.url, "file": str(self.out_path)}

    def compose_addresses(self) -> dict[str, str]:
        return {"alert-log:9099": self.address}  # Alertmanager posts to <url>/alerts

    def command(self) -> list[str]:
        listen = f"--listen={HOST}:{self.port}"
        return [sys.executable, str(self.build()), listen, f"--out={self.out_path}"]

    def health(self) -> bool:
        status, _ = http_get(f"{self.url}/health")
        return status == 200

    def received(self) -> list[dict[str, Any]]:
        """Every alert line written so far (read from the file itself)."""
        if not self.out_path.exists():
            return []
        lines = self.out_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
