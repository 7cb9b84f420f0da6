"""The Compose files, checked and run by the real Docker Compose (v5, built from its Go module).

`docker compose config` loads, merges, interpolates and validates a project as
`up` would: the infrastructure file, its secure override, and the services'
file ./deploy-all.sh generates, with only the required variables and with
every optional one set. The infrastructure's images cannot be pulled here, so
it cannot start; the services' file goes `up` against the native Kafka, Consul
and Jaeger instead (an override swaps the Compose infrastructure for them), and
`down` must leave nothing behind.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml

from platform_deploy import databases
from platform_deploy.__main__ import main as deploy_step
from platform_native.databases import Databases
from platform_native.processes import free_ports
from platform_native.servers import Kafka, Postgres, running
from tests.harness.docker.compose import build_plugins

from .conftest import REPO, Platform
from .docker_harness import Docker, shown
from .kafka_clients import create_topics
from .polling import eventually
from .rendering import render

INFRA = REPO / "docker-compose.infrastructure.yml"
SECURE = REPO / "docker-compose.secure.yml"
KAFKA_CLUSTER = REPO / "docker-compose.kafka-cluster.yml"
REQUIRED = {
    "GRAFANA_ADMIN_PASSWORD": "not-a-secret",
    "POSTGRES_PASSWORD": "not-a-secret",
    "KAFKA_SSL_PASSWORD": "not-a-secret",
}
OPTIONAL = {
    "KAFKA_EXTERNAL_PORT": "19094",
    "KAFKA_CLUSTER_ID": "AAAAAAAAAAAAAAAAAAAAAA",
    "KONG_PROXY_PORT": "18000",
    "POSTGRES_PORT": "15432",
    "PROMETHEUS_RETENTION": "2d",
    "PLATFORM_SUBNET": "172.31.9.0/24",
    "CONSUL_IP": "172.31.9.53",
    "KAFKA_SECURE_PORT": "19095",
    "KAFKA_2_EXTERNAL_PORT": "19096",
    "KAFKA_3_EXTERNAL_PORT": "19097",
    "PIP_INDEX_URL": "https://pypi.example.org/simple",
    "PIP_EXTRA_INDEX_URL": "https://packages.example.org/simple",
    "PIP_FIND_LINKS": "http://127.0.0.1:8099/",
    "PIP_TRUSTED_HOST": "packages.example.org",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
}


@pytest.fixture(scope="module")
def compose_binary(request: pytest.FixtureRequest) -> Path:
    with shown(request):  # a first build prints its progress
        return build_plugins() / "docker-compose"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The services' Compose file deploy-all writes: for services/ and for new services."""
    root = tmp_path_factory.mktemp("generated")
    new_services = root / "services"
    render(new_services, service_name="billing-api", http_port="8021")
    render(new_services, service_name="billing-audit", http_port="8022", http_api="no")
    files = {}
    for label, services_dir in (("services", REPO / "services"), ("new", new_services)):
        out = root / label / "docker-compose.services.yml"
        assert deploy_step(["--services-dir", str(services_dir), "compose", "--out", str(out)]) == 0
        files[label] = out
    return files


def compose_config(
    binary: Path, files: list[Path], variables: dict[str, str], env_file: Path
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` as deploy-all runs it (project directory: the repository)."""
    env_file.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and k not in OPTIONAL}
    command = [str(binary), "--project-directory", str(REPO), "--env-file", str(env_file)]
    command += [arg for path in files for arg in ("-f", str(path))]
    return subprocess.run(
        [*command, "config"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


PROJECTS: dict[str, list[Path | str]] = {
    "infrastructure": [INFRA],
    "secure": [INFRA, SECURE],
    "services": [INFRA, "services"],
    "secure+services": [INFRA, SECURE, "services"],
    "new-services": [INFRA, "new"],
    "kafka-cluster": [INFRA, KAFKA_CLUSTER],
    "kafka-cluster+services": [INFRA, KAFKA_CLUSTER, "services"],
}


@pytest.mark.infra
@pytest.mark.parametrize("optional", [False, True], ids=["required-env", "all-env"])
@pytest.mark.parametrize("project", PROJECTS)
def test_docker_compose_config_accepts(
    project: str,
    optional: bool,
    compose_binary: Path,
    generated: dict[str, Path],
    tmp_path: Path,
) -> None:
    files = [f if isinstance(f, Path) else generated[f] for f in PROJECTS[project]]
    variables = {**REQUIRED, **(OPTIONAL if optional else {})}

    result = compose_config(compose_binary, files, variables, tmp_path / ".env")

    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    kafka_port = config["services"]["kafka"]["ports"][0]["published"]
    assert kafka_port == ("19094" if optional else "9094")
    postgres = config["services"]["postgres"]["ports"][0]
    assert (postgres["host_ip"], postgres["published"]) == (
        "127.0.0.1",
        "15432" if optional else "5432",
    )
    for name, service in config["services"].items():
        if "build" in service:  # a service of services/: pip's settings reach its build
            args = service["build"].get("args") or {}
            expected = {k: v for k, v in OPTIONAL.items() if k.startswith("PIP_")}
            assert args == (expected if optional else {}), name
            assert service["build"]["network"] == "host"


@pytest.mark.infra
def test_the_kafka_cluster_override_runs_three_brokers_in_one_quorum(
    compose_binary: Path, tmp_path: Path
) -> None:
    result = compose_config(compose_binary, [INFRA, KAFKA_CLUSTER], REQUIRED, tmp_path / ".env")

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    brokers = {name: services[name] for name in ("kafka", "kafka-2", "kafka-3")}
    voters = "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    for number, (name, broker) in enumerate(brokers.items(), start=1):
        env = broker["environment"]
        assert str(env["KAFKA_NODE_ID"]) == str(number), name
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (
            "3",
            "2",
        )
        assert env["KAFKA_ADVERTISED_LISTENERS"].startswith(f"PLAINTEXT://{name}:9092,")
        assert env["CLUSTER_ID"] == brokers["kafka"]["environment"]["CLUSTER_ID"]
        assert broker["healthcheck"] == brokers["kafka"]["healthcheck"]
    ports = [(p["host_ip"], p["published"]) for b in brokers.values() for p in b["ports"]]
    assert ports == [("127.0.0.1", "9094"), ("127.0.0.1", "9096"), ("127.0.0.1", "9097")]
    assert len({b["volumes"][0]["source"] for b in brokers.values()}) == 3
    # The native three-broker settings (platform_native) are the override's.
    native = Kafka(tmp_path / "kafka", jars=tmp_path, replication=3)
    replicated = {
        key: value
        for key, value in native.properties().items()
        if "replication" in key or "isr" in key or "insync" in key or "lag.time" in key
    }
    assert len(replicated) == 8, replicated
    env = brokers["kafka-2"]["environment"]
    assert {k: str(env[f"KAFKA_{k.upper().replace('.', '_')}"]) for k in replicated} == replicated


@pytest.mark.infra
@pytest.mark.parametrize("missing", ["GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD"])
def test_docker_compose_config_names_a_missing_required_variable(
    missing: str, compose_binary: Path, tmp_path: Path
) -> None:
    variables = {name: value for name, value in REQUIRED.items() if name != missing}
    result = compose_config(compose_binary, [INFRA], variables, tmp_path / ".env")

    assert result.returncode != 0
    assert missing in result.stderr and "set in .env" in result.stderr


# ------------------------------------------------------- up and down, for real


def native_override(services: list[str], env: dict[str, dict[str, str]]) -> str:
    """Compose override: each service on the host's network, using the native platform.

    `!reset` drops what points at the Compose infrastructure (its network, the
    dependencies on its containers, the published ports).
    """
    lines = ["services:"]
    for name in services:
        lines += [
            f"  {name}:",
            "    network_mode: host",
            "    networks: !reset []",
            "    depends_on: !reset {}",
            "    ports: !reset []",
            "    environment:",
        ]
        lines += [f"      {key}: {json.dumps(value)}" for key, value in env[name].items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    with running(server):
        yield server


def database_for(postgres: Postgres, name: str, state_dir: Path) -> None:
    """`name`'s database and DSN file where the Compose file mounts it from, written as
    ./deploy-all.sh writes it (0600, owned by the image's user), with the host's address."""
    server = postgres.databases()
    secrets_dir = databases.compose_secrets(state_dir)
    Databases(server.run, secrets_dir, server.address, databases.SERVICE_UID).ensure(name)


@pytest.mark.docker
@pytest.mark.infra
def test_the_services_go_up_against_the_native_platform_and_down_leaves_nothing(
    docker: Docker,
    platform: Platform,
    postgres: Postgres,
    generated: dict[str, Path],
    tmp_path: Path,
) -> None:
    services_file = generated["services"]
    services = yaml.safe_load(services_file.read_text())["services"]
    names = list(services)
    env = {}
    for name in names:
        if "secrets" in services[name]:  # its DSN, as a Compose secret
            database_for(postgres, name, services_file.parent)
        prefix = f"compose-{name}-{secrets.token_hex(3)}"
        topics = [f"{prefix}.requested", f"{prefix}.created", f"{prefix}.dead-letter"]
        create_topics(platform.kafka, topics, partitions=3)
        env[name] = {
            **platform.service_env(),
            "CONSUMES_TOPIC": topics[0],
            "PRODUCES_TOPIC": topics[1],
            "DEAD_LETTER_TOPIC": topics[2],
            "CONSUMER_GROUP": prefix,
            "SERVICE_INSTANCE_ID": prefix,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(free_ports(1)[0]),
        }
    override = tmp_path / "native-platform.yml"
    override.write_text(native_override(names, env))
    project = f"compose-check-{secrets.token_hex(3)}"
    compose = ["compose", "--project-name", project, "--project-directory", str(REPO)]
    compose += ["-f", str(services_file), "-f", str(override)]
    label = f"label=com.docker.compose.project={project}"
    consul = platform.consul.http_url

    def instances(name: str) -> list[str]:
        entries = httpx.get(f"{consul}/v1/health/service/{name}?passing=true").json()
        return [entry["Service"]["ID"] for entry in entries]

    def registered(name: str, instance: str) -> bool:
        return instance in instances(name)

    try:
        up = docker(
            *compose, "up", "--detach", "--build", "--wait", env=docker.build_env(), timeout=1800
        )
        running = docker("ps", "--filter", label, "--format", "{{.Names}} {{.Status}}").stdout
        for name in names:
            wanted = f"{name}-{env[name]['SERVICE_INSTANCE_ID']}"
            assert eventually(partial(registered, name, wanted), 120), up.stderr
        assert running.count("(healthy)") == len(names), running
    finally:
        down = docker(*compose, "down", "--volumes", "--remove-orphans", check=False)
    assert down.returncode == 0, down.stderr

    left = {
        kind: docker(*listing, "--quiet", "--filter", label).stdout.split()
        for kind, listing in (
            ("containers", ["ps", "--all"]),
            ("networks", ["network", "ls"]),
            ("volumes", ["volume", "ls"]),
        )
    }
    assert left == {"containers": [], "networks": [], "volumes": []}
    for name in names:
        assert not [i for i in instances(name) if env[name]["SERVICE_INSTANCE_ID"] in i]
