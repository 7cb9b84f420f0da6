"""Alertmanager, run from the shipped infrastructure/alertmanager/alertmanager.yml.

Alertmanager has no second config layer, so the native process reads a copy
in which only the receivers' Compose addresses differ (``http://alert-log:9099``
becomes the native alert log's loopback address; see platform_native.configs).
Gossip (clustering) is off: ``--cluster.listen-address=`` would otherwise bind
0.0.0.0:9094. Built from the Go module github.com/prometheus/alertmanager,
together with amtool, which checks the config and queries the API.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from platform_native import build, configs, gobuild, versions
from platform_native.probes import http_get
from platform_native.servers.base import Server
from platform_native.servers.loopback_http import LoopbackHttpServer
from platform_native.tools import ToolError, run_tool

# The web UI is built with npm and is not part of the module zip, but
# `//go:embed app/dist` needs files: a page that says where the API is.
UI_PLACEHOLDER = "<!doctype html><p>Web UI not built; the API is at /api/v2</p>\n"


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """amtool first (it needs no UI), then alertmanager with the placeholder UI."""
    source = gobuild.module_source(
        versions.ALERTMANAGER_MODULE, versions.ALERTMANAGER_VERSION, work, log
    )
    for flavour in ("elm", "mantine"):
        dist = source / "ui" / "app" / "dist" / flavour
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "index.html").write_text(UI_PLACEHOLDER)
    version = versions.ALERTMANAGER_VERSION
    ldflags = " ".join(
        f"-X github.com/prometheus/common/version.{key}={value}"
        for key, value in (("Version", version), ("Branch", "HEAD"), ("Revision", f"v{version}"))
    )
    for tool in ("amtool", "alertmanager"):
        gobuild.go_build(source, f"./cmd/{tool}", out / tool, log, ldflags)


def build_alertmanager() -> Path:
    """Return the directory holding ``alertmanager`` and ``amtool``, building it once."""
    return build.ensure("alertmanager", versions.ALERTMANAGER_VERSION, _recipe)


def replace_url_addresses(text: str, addresses: Mapping[str, str]) -> str:
    """Replace ``//host:port`` in URLs by the native address, for the hosts given.

    configs.replace_addresses leaves URLs alone (its Compose addresses stand
    on their own); Alertmanager names each receiver by URL. Hosts without a
    native address keep their name, so only mapped ones change.
    """
    for compose, native in addresses.items():
        text = re.sub(rf"//{re.escape(compose)}(?=[/\s\"']|$)", f"//{native}", text)
    return text


class Alertmanager(LoopbackHttpServer):
    """One Alertmanager on loopback, without clustering, from the shipped config."""

    name = "alertmanager"
    version = versions.ALERTMANAGER_VERSION

    def __init__(
        self,
        workdir: Path | str,
        *,
        peers: Sequence[Server] = (),
        config: Path = configs.ALERTMANAGER_CONFIG,
        config_text: str | None = None,
        bin_dir: Path | None = None,
        detach: bool = False,
    ) -> None:
        """``peers`` are the native servers its receivers' URLs name (the alert log).

        ``config_text`` runs that text (addresses still replaced) instead of the file.
        """
        super().__init__(workdir, detach=detach)
        self.bin_dir = bin_dir or self.build()
        self.peers = list(peers)
        self.shipped_config = config
        self.config_text = config_text
        self.config_path = self.workdir / "alertmanager.yml"

    @classmethod
    def build(cls) -> Path:
        return build_alertmanager()

    def compose_addresses(self) -> dict[str, str]:
        return {"alertmanager:9093": self.address}

    def replacements(self) -> dict[str, str]:
        """The peers' Compose addresses mapped to their native ones."""
        mapping: dict[str, str] = {}
        for peer in self.peers:
            mapping.update(peer.compose_addresses())
        return mapping

    def configure(self) -> None:
        text = self.config_text if self.config_text is not None else self.shipped_config.read_text()
        self.config_path.write_text(replace_url_addresses(text, self.replacements()))

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            f"--web.external-url={self.url}",  # links in notifications; no hostname lookup
            "--cluster.listen-address=",  # no gossip: it would listen on 0.0.0.0:9094
        ]

    def health(self) -> bool:
        status, _ = http_get(f"{self.url}/-/ready")
        return status == 200

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (e.g. ``active="true"``, ``inhibited="false"``)."""
        query = "&".join(f"{key}={value}" for key, value in filters.items())
        status, body = http_get(f"{self.url}/api/v2/alerts?{query}", timeout=10)
        if status != 200:
            raise ToolError(f"alertmanager /api/v2/alerts: HTTP {status} {body[:300]!r}")
        found: list[dict[str, Any]] = json.loads(body)
        return found


def amtool_check_config(
    path: Path | str, *, bin_dir: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``amtool check-config`` on an Alertmanager configuration file."""
    amtool = (bin_dir or build_alertmanager()) / "amtool"
    return run_tool([str(amtool), "check-config", str(path)], check)
