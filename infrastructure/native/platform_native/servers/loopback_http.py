"""What the one-port servers share: a free loopback port for HTTP, its address and URL.

Prometheus, Alertmanager, the alert log and the lag exporter each serve one
HTTP port; the rest of the Server interface stays in their own modules.
"""

from __future__ import annotations

from pathlib import Path

from platform_native.processes import HOST, free_ports
from platform_native.servers.base import Server


class LoopbackHttpServer(Server):
    """A server with one HTTP port on 127.0.0.1, picked when it is created."""

    def __init__(self, workdir: Path | str, *, detach: bool = False) -> None:
        super().__init__(workdir, detach=detach)
        (self.port,) = free_ports(1)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address}"

    def ports(self) -> dict[str, int]:
        return {"web": self.port}

    def addresses(self) -> dict[str, str]:
        return {"url": self.url}
