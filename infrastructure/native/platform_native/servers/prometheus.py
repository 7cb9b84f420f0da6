"""Prometheus (with Consul service discovery), run from the shipped prometheus.yml.

Prometheus has no second config layer, so the native process reads a copy of
infrastructure/prometheus/prometheus.yml in which only the Compose addresses
differ (platform_native.configs explains the rule); its own listen address
and storage path are flags, as in Compose. Its alert rules (rule_files:
rules/*.yml, relative to the config) are copied beside that copy. Built from the Go module
github.com/prometheus/prometheus (module v0.315.0 is Prometheus 3.15.0).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from platform_native import build, configs, gobuild, versions
from platform_native.probes import http_get
from platform_native.servers.base import Server
from platform_native.servers.loopback_http import LoopbackHttpServer
from platform_native.tools import ToolError, run_tool


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """prometheus and promtool with only the service discovery we use.

    The web UI's JavaScript is not part of the Go module (it needs npm), so the
    UI pages are missing; the HTTP API, /-/ready and /metrics all work.
    """
    module, version = versions.PROMETHEUS_MODULE, versions.PROMETHEUS_MODULE_VERSION
    source = gobuild.module_source(module, version, work, log)
    version_flag = f"-X github.com/prometheus/common/version.Version={versions.PROMETHEUS_VERSION}"
    tags = ["-tags", versions.PROMETHEUS_BUILD_TAGS]
    for tool in ("prometheus", "promtool"):
        gobuild.go_build(source, f"./cmd/{tool}", out / tool, log, version_flag, tags)


def build_prometheus() -> Path:
    """Return the directory holding ``prometheus`` and ``promtool``, building it once."""
    return build.ensure("prometheus", versions.PROMETHEUS_VERSION, _recipe)


class Prometheus(LoopbackHttpServer):
    """Prometheus storing its TSDB in the work dir, scraping the platform on loopback."""

    name = "prometheus"
    version = versions.PROMETHEUS_VERSION

    def __init__(
        self,
        workdir: Path | str,
        *,
        peers: Sequence[Server] = (),
        config: Path = configs.PROMETHEUS_CONFIG,
        config_text: str | None = None,
        rules_text: str | None = None,
        bin_dir: Path | None = None,
        detach: bool = False,
    ) -> None:
        """``peers`` are the native servers whose Compose addresses it scrapes.

        ``config_text`` runs that text as is instead of the shipped file;
        ``rules_text`` replaces the shipped alert rules (e.g. rendered with
        short ``for:`` durations by platform_native.alert_rules).
        """
        super().__init__(workdir, detach=detach)
        self.bin_dir = bin_dir or self.build()
        self.peers = list(peers)
        self.shipped_config = config
        self.config_text = config_text
        self.rules_text = rules_text
        self.config_path = self.workdir / "prometheus.yml"

    @classmethod
    def build(cls) -> Path:
        return build_prometheus()

    def compose_addresses(self) -> dict[str, str]:
        # prometheus.yml scrapes itself as localhost:9090, as inside its container.
        return {"prometheus:9090": self.address, "localhost:9090": self.address}

    def replacements(self) -> dict[str, str]:
        """Every Compose address it knows, mapped to the native one."""
        mapping = self.compose_addresses()
        for peer in self.peers:
            mapping.update(peer.compose_addresses())
        return mapping

    def start(self, config_text: str | None = None) -> Self:
        """Start; ``config_text``, if given, runs instead of the shipped file."""
        if config_text is not None:
            self.config_text = config_text
        return super().start()

    def configure(self) -> None:
        if self.config_text is not None:
            text = self.config_text
        else:
            shipped = self.shipped_config.read_text()
            text = configs.replace_addresses(shipped, self.replacements())
        self.config_path.write_text(text)
        self._write_rules()

    def _write_rules(self) -> None:
        """The shipped rules/*.yml, or ``rules_text``, where rule_files looks."""
        rules = self.workdir / "rules"
        shutil.rmtree(rules, ignore_errors=True)
        rules.mkdir()
        for path in sorted(configs.PROMETHEUS_RULES.glob("*.yml")):
            shutil.copyfile(path, rules / path.name)
        if self.rules_text is not None:
            (rules / "alerts.yml").write_text(self.rules_text)

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",  # allows POST /-/reload, as in Compose
        ]

    def health(self) -> bool:
        status, _ = http_get(f"{self.url}/-/ready")
        return status == 200

    def query(self, promql: str) -> list[Any]:
        """Run an instant query; return ``data.result`` (a list of samples)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        status, body = http_get(url, timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise ToolError(f"query {promql!r} failed: HTTP {status} {body[:500]!r}")
        result: list[Any] = answer["data"]["result"]
        return result


def promtool_check_config(
    path: Path | str, *, bin_dir: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool check config`` on a Prometheus configuration file."""
    promtool = (bin_dir or build_prometheus()) / "promtool"
    return run_tool([str(promtool), "check", "config", str(path)], check)
