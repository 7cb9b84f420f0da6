"""Consul: one server agent that elects itself, run from the shipped consul.hcl.

The agent reads infrastructure/consul/consul.hcl, the file Compose mounts,
then ``native.json`` with only its loopback addresses, free ports and data
directory (see platform_native.configs). Each start begins with an empty data
directory, as the ``-dev`` agent this replaced did: services register again,
as they must after losing a single server. Built from the Go module
github.com/hashicorp/consul.

``acl=True`` also loads infrastructure/consul/secure/acl.hcl (ACLs on,
default deny; docker-compose.secure.yml loads the same file), bootstraps the
ACL system at start (:attr:`Consul.management_token`), gives the agent a
token of its own, and makes service tokens with :meth:`Consul.service_token`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Self

from platform_native import build, configs, gobuild, versions
from platform_native.probes import http_get, http_json
from platform_native.processes import HOST, free_ports
from platform_native.servers.base import Server
from platform_native.tools import ToolError


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    source = gobuild.module_source(versions.CONSUL_MODULE, versions.CONSUL_VERSION, work, log)
    gobuild.go_build(source, ".", out / "consul", log)


def build_consul() -> Path:
    """Return the path of the ``consul`` binary, building it once."""
    return build.ensure("consul", versions.CONSUL_VERSION, _recipe) / "consul"


class Consul(Server):
    """A single Consul server on loopback, from the shipped configuration."""

    name = "consul"
    version = versions.CONSUL_VERSION

    def __init__(
        self,
        workdir: Path | str,
        *,
        binary: Path | None = None,
        config: Path = configs.CONSUL_CONFIG,
        acl: bool = False,
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        self.binary = binary or self.build()
        self.config = config
        self.acl = acl
        self.management_token: str | None = None
        (
            self.http_port,
            self.dns_port,
            self.grpc_port,
            self.serf_lan_port,
            self.serf_wan_port,
            self.server_port,
        ) = free_ports(6, udp=True)
        self.overlay_path = self.workdir / "native.json"
        self.data_dir = self.workdir / "data"

    @classmethod
    def build(cls) -> Path:
        return build_consul()

    @property
    def http_addr(self) -> str:
        """``127.0.0.1:PORT``, the value for CONSUL_HTTP_ADDR."""
        return f"{HOST}:{self.http_port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` for HTTP API calls."""
        return f"http://{self.http_addr}"

    @property
    def grpc_addr(self) -> str:
        """``127.0.0.1:PORT`` of the (plaintext) gRPC/xDS port."""
        return f"{HOST}:{self.grpc_port}"

    def ports(self) -> dict[str, int]:
        return {
            "http": self.http_port,
            "dns": self.dns_port,
            "grpc": self.grpc_port,
            "serf_lan": self.serf_lan_port,
            "serf_wan": self.serf_wan_port,
            "server": self.server_port,
        }

    def addresses(self) -> dict[str, str]:
        return {
            "http_addr": self.http_addr,
            "http_url": self.http_url,
            "ui": f"{self.http_url}/ui/",
            "dns": f"{HOST}:{self.dns_port}",
            "grpc": self.grpc_addr,
        }

    def compose_addresses(self) -> dict[str, str]:
        return {"consul:8500": self.http_addr, "consul:8600": f"{HOST}:{self.dns_port}"}

    def overlay(self) -> dict[str, Any]:
        """The native layer over consul.hcl: loopback, free ports, a data dir."""
        return {
            "bind_addr": HOST,
            "client_addr": HOST,
            "data_dir": str(self.data_dir),
            "ports": {**self.ports(), "https": -1, "grpc_tls": -1},
        }

    def configure(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        configs.write_overlay(self.overlay_path, self.overlay())

    def command(self) -> list[str]:
        acl = [f"-config-file={configs.CONSUL_ACL_CONFIG}"] if self.acl else []
        shipped = [f"-config-file={self.config}", *acl]
        return [str(self.binary), "agent", *shipped, f"-config-file={self.overlay_path}"]

    def health(self) -> bool:
        status, body = http_get(f"{self.http_url}/v1/status/leader")
        return status == 200 and bool(json.loads(body))

    def start(self) -> Self:
        """Start; with ACLs, also bootstrap them and give the agent its token."""
        super().start()
        if self.acl and self.management_token is None:
            self._bootstrap_acl()
        return self

    def _forget(self) -> None:
        super()._forget()
        self.management_token = None  # the next start has fresh data: bootstrap again

    def _bootstrap_acl(self, timeout: float = 30.0) -> None:
        """``consul acl bootstrap``, retried while the new leader sets ACLs up."""
        deadline = time.monotonic() + timeout
        while True:
            status, answer = http_json("PUT", f"{self.http_url}/v1/acl/bootstrap")
            if status == 200:
                self.management_token = str(answer["SecretID"])
                break
            if time.monotonic() > deadline:
                raise ToolError(f"consul acl bootstrap: HTTP {status} {answer!r}")
            time.sleep(0.25)
        # The agent registers its node and syncs services under a token of its own.
        agent_rules = 'node_prefix "" { policy = "write" }\nservice_prefix "" { policy = "read" }'
        agent = self.make_token("agent", agent_rules)
        self.api("PUT", "/v1/agent/token/agent", {"Token": agent})

    def make_token(self, policy_name: str, rules: str) -> str:
        """A new token holding the policy ``policy_name`` (made with ``rules`` (HCL) the first
        time; every instance of a service gets a token of its own); returns its secret."""
        headers = {"X-Consul-Token": self.management_token or ""}
        url = f"{self.http_url}/v1/acl/policy/name/{policy_name}"
        status, policy = http_json("GET", url, headers=headers)
        if status != 200:
            policy = self.api("PUT", "/v1/acl/policy", {"Name": policy_name, "Rules": rules})
        token = self.api("PUT", "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]})
        return str(token["SecretID"])

    def service_token(self, service: str) -> str:
        """A token that may register, check and deregister ``service`` and nothing else."""
        return self.make_token(f"service-{service}", f'service "{service}" {{ policy = "write" }}')

    def api(self, method: str, path: str, payload: Any = None, token: str | None = None) -> Any:
        """Call the HTTP API (``path`` like ``/v1/agent/services``); return its JSON.

        With ACLs the management token is used unless ``token`` is given.
        """
        secret = token or self.management_token
        headers = {"X-Consul-Token": secret} if secret else None
        status, answer = http_json(method, f"{self.http_url}{path}", payload, headers)
        if status != 200:
            raise ToolError(f"consul {method} {path}: HTTP {status} {answer!r}")
        return answer
