"""The platform with a real Docker engine: deploy-all's Docker mode, Consul on Docker networks.

No image of the infrastructure can be pulled here, so `./deploy-all.sh` in Docker
mode must say which before it starts anything. Consul's shipped configuration must
validate inside a container with two networks (two private addresses, as Compose
gives a container on two networks) and on this host while Docker's bridges exist.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from platform_native.servers.consul import build_consul

from .conftest import REPO
from .docker_harness import Docker

pytestmark = [pytest.mark.docker, pytest.mark.infra]

CONSUL_DIR = REPO / "infrastructure" / "consul"
DECK_IMAGE = "kong/deck:v1.55.0"  # deploy-all.sh validates the Kong config with it


def infrastructure_images() -> list[str]:
    services = yaml.safe_load((REPO / "docker-compose.infrastructure.yml").read_text())["services"]
    return [spec["image"] for spec in services.values()]


def test_docker_mode_names_the_images_it_cannot_pull_before_starting_anything(
    docker: Docker, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    had_env_file = (REPO / ".env").exists()
    env = {**docker.engine.cli_env(), "PLATFORM_STATE_DIR": str(state)}

    result = subprocess.run(
        [str(REPO / "deploy-all.sh"), "--docker", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    [error] = result.stderr.splitlines()  # one clear line
    assert error.startswith("error: images missing that cannot be pulled: "), error
    named = error.split(": ", 2)[2].split(" (")[0].split()
    assert sorted(named) == sorted([*infrastructure_images(), DECK_IMAGE])
    # Nothing started or written: no container, network, volume, state or .env.
    assert docker("ps", "--all", "--quiet").stdout.split() == []
    networks = docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(networks) == ["host", "none"]
    assert docker("volume", "ls", "--quiet").stdout.split() == []
    assert not state.exists()
    assert (REPO / ".env").exists() == had_env_file


@pytest.fixture
def two_networks(docker: Docker) -> Iterator[list[str]]:
    """Two user-defined Docker networks: two bridges on this host, two addresses inside."""
    names = [f"consul-check-{secrets.token_hex(3)}-{i}" for i in (1, 2)]
    for name in names:
        docker("network", "create", name)
    try:
        yield names
    finally:
        for name in names:
            docker("network", "rm", name, check=False)


def test_consul_config_validates_in_a_container_on_two_networks_and_on_this_host(
    docker: Docker, two_networks: list[str], tmp_path: Path
) -> None:
    consul = build_consul()
    without_bind = tmp_path / "consul"
    without_bind.mkdir()
    text = (CONSUL_DIR / "consul.hcl").read_text(encoding="utf-8")
    (without_bind / "consul.hcl").write_text(re.sub(r"(?m)^bind_addr.*$", "", text))
    name = f"consul-check-{secrets.token_hex(3)}"
    mounts = {
        consul: "/usr/local/bin/consul",
        CONSUL_DIR: "/consul/config",
        without_bind: "/unbound",
    }
    volumes = [arg for host, inside in mounts.items() for arg in ("-v", f"{host}:{inside}:ro")]
    docker("create", "--name", name, "--network", two_networks[0], *volumes, docker.base_image,
           "sleep", "600")  # fmt: skip
    try:
        docker("network", "connect", two_networks[1], name)
        docker("start", name)
        addresses = [
            network["IPAddress"]
            for network in docker.inspect("container", name)["NetworkSettings"]["Networks"].values()
        ]
        unbound = docker("exec", name, "consul", "validate", "/unbound", check=False)
        shipped = docker("exec", name, "consul", "validate", "/consul/config", check=False)
    finally:
        docker("rm", "--force", name, check=False)

    assert len(addresses) == 2 and all(a.startswith("172.") for a in addresses), addresses
    # Two private addresses: without bind_addr Consul refuses, with the shipped one it validates.
    assert unbound.returncode != 0
    assert "Multiple private IPv4 addresses found" in unbound.stdout + unbound.stderr
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    # And on this host, which now has the two networks' bridges as well.
    bridges = subprocess.run(["ip", "-4", "-br", "addr"], capture_output=True, text=True).stdout
    assert sum(line.startswith("br-") for line in bridges.splitlines()) >= 2, bridges
    on_host = subprocess.run(
        [str(consul), "validate", str(CONSUL_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        check=False,
    )
    assert on_host.returncode == 0, on_host.stdout + on_host.stderr
