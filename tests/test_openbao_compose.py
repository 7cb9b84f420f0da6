"""OpenBao in Compose: the pinned openbao/openbao image of the native version, on loopback,
with a configuration like the native one (Raft storage, the file audit device), checked by
the real `docker compose config` (Compose cannot start here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from platform_native import versions
from platform_native.servers.openbao import config_hcl
from tests.harness.docker.compose import build_plugins

from .conftest import REPO
from .test_compose import INFRA, REQUIRED, compose_config

pytestmark = pytest.mark.infra

CONFIG = REPO / "infrastructure" / "openbao" / "openbao.hcl"


def stanzas(hcl: str) -> list[str]:
    """The blocks and top-level settings, without their values (what both files set)."""
    return sorted(set(re.findall(r"^(\w+(?: \"\w+\")*)\s*[={]", hcl, re.M)))


def test_compose_runs_the_native_version_on_loopback_with_the_shared_configuration(
    tmp_path: Path,
) -> None:
    result = compose_config(
        build_plugins() / "docker-compose", [INFRA], REQUIRED, tmp_path / ".env"
    )
    assert result.returncode == 0, result.stderr
    openbao = yaml.safe_load(result.stdout)["services"]["openbao"]
    [port] = openbao["ports"]
    mounts = {volume["target"]: volume for volume in openbao["volumes"]}

    assert openbao["image"] == f"openbao/openbao:{versions.OPENBAO_VERSION}"
    assert (port["host_ip"], port["target"]) == ("127.0.0.1", 8200)
    assert mounts["/openbao/config/openbao.hcl"]["read_only"] is True
    assert {"/openbao/file", "/openbao/logs"} <= set(mounts)
    native = config_hcl(tmp_path / "data", 1, 2, tmp_path / "audit.log")
    assert stanzas(CONFIG.read_text()) == stanzas(native)
