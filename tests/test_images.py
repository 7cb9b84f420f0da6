"""Every service image, built from its own Dockerfile and run for real (marker `docker`).

A freshly rendered service and every service under services/ are built by their
CI workflow's build step on the stand-in base image (tests/docker_harness.py),
then run as production runs them: a read-only root filesystem, the image's own
user, Docker's HEALTHCHECK, SIGTERM from `docker stop`. With `--network host`
they use the session's native Kafka, Consul and Jaeger; each container gets
topics and a consumer group of its own, so what it produced is its own.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from platform_deploy.databases import SERVICE_UID
from platform_native.databases import Databases
from platform_native.processes import free_ports
from platform_native.servers import Postgres, running
from platform_native.services import ServiceInfo, passing_instances

from .conftest import REPO, Platform
from .docker_harness import Docker, build_like_ci, env_args, error_lines, shown
from .kafka_clients import PARTITIONS, committed, create_topics, end_offsets, read_until
from .polling import eventually
from .rendering import render

pytestmark = [pytest.mark.docker, pytest.mark.infra]

SOURCES = ["rendered", *sorted(p.parent.name for p in (REPO / "services").glob("*/Dockerfile"))]
STOP_MESSAGES = 3000  # produced just before `docker stop`, so batches are in flight
STOP_BATCH = "50"


@dataclass
class Container:
    """One running instance of a service image and what it was given."""

    name: str
    image: str
    info: ServiceInfo
    url: str
    env: dict[str, str]

    @property
    def service_id(self) -> str:
        return f"{self.info.name}-{self.name}"


@pytest.fixture(scope="module", params=SOURCES)
def image(
    request: pytest.FixtureRequest, docker: Docker, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, ServiceInfo]:
    """The service's image, built by its CI workflow's build step."""
    if request.param == "rendered":
        service = render(tmp_path_factory.mktemp("image"))
    else:
        service = REPO / "services" / request.param
    with shown(request):
        return build_like_ci(docker, service, request.param), ServiceInfo.read(service)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL server for the images of services with a database."""
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    with running(server):
        yield server


def database_args(request: pytest.FixtureRequest, name: str, secrets_dir: str) -> list[str]:
    """A database of its own, its DSN as Compose hands it over: a 0600 file owned by the
    image's user, bind-mounted read-only at /run/secrets/database-url."""
    server: Postgres = request.getfixturevalue("postgres")
    found = server.databases()
    mine = Databases(found.run, Path(secrets_dir), found.address, owner=SERVICE_UID)
    mine.ensure(name)
    target = "/run/secrets/database-url"
    mount = f"{mine.url_file(name)}:{target}:ro"
    return ["--volume", mount, "--env", f"DATABASE_URL_FILE={target}"]


@pytest.fixture(scope="module")
def container(
    image: tuple[str, ServiceInfo],
    docker: Docker,
    platform: Platform,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Container]:
    """The image running with `--network host --read-only` against the native platform."""
    tag, info = image
    name = f"{info.name}-{secrets.token_hex(3)}"
    prefix = f"docker-{name}"
    topics = {
        "CONSUMES_TOPIC": f"{prefix}.requested",
        "PRODUCES_TOPIC": f"{prefix}.created",
        "DEAD_LETTER_TOPIC": f"{prefix}.dead-letter",
    }
    create_topics(platform.kafka, list(topics.values()), partitions=PARTITIONS)
    port = free_ports(1)[0]
    env = {
        **platform.service_env(),
        **topics,
        "CONSUMER_GROUP": prefix,
        "CONSUMER_BATCH_SIZE": STOP_BATCH,
        "SERVICE_INSTANCE_ID": name,
        "HTTP_HOST": "127.0.0.1",  # the host's network: loopback only
        "HTTP_PORT": str(port),
    }
    run = ["run", "--detach", "--name", name, "--network", "host", "--read-only"]
    if info.database:
        run += database_args(request, name, str(tmp_path_factory.mktemp("secrets")))
    docker(*run, *env_args(env), tag)
    try:
        yield Container(name, tag, info, f"http://127.0.0.1:{port}", env)
    finally:
        docker("rm", "--force", name, check=False)


@pytest.fixture(scope="module")
def passing(container: Container, platform: Platform, docker: Docker) -> dict[str, Any]:
    """The container's instance in Consul, once all its checks pass."""

    def ours() -> list[dict[str, Any]]:
        instances = passing_instances(platform.consul.http_addr, container.info.name)
        return [entry for entry in instances if entry["Service"]["ID"] == container.service_id]

    found = eventually(ours, timeout=120)
    assert found, "not passing in Consul:\n" + "\n".join(docker.logs(container.name)[-40:])
    return dict(found[0])


def test_the_image_is_built_from_its_dockerfile_on_the_base_it_names(
    image: tuple[str, ServiceInfo], docker: Docker
) -> None:
    tag, _info = image
    config = docker.inspect("image", tag)["Config"]
    base_layers = docker("history", "--no-trunc", "--quiet", docker.base_image).stdout.split()
    image_layers = docker("history", "--no-trunc", "--quiet", tag).stdout.split()

    assert image_layers[-len(base_layers) :] == base_layers  # FROM python:3.11-slim-bookworm
    assert config["User"] == "10001"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["StopSignal"] == "SIGTERM"


def test_runs_as_its_user_on_a_read_only_root(container: Container, docker: Docker) -> None:
    inspected = docker.inspect("container", container.name)
    uid = docker("exec", container.name, "python", "-c", "import os; print(os.getuid())")
    as_root = docker("exec", "--user", "0", container.name, "touch", "/probe", check=False)

    assert inspected["Config"]["User"] == "10001"
    assert uid.stdout.strip() == "10001"
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert as_root.returncode != 0 and "Read-only file system" in as_root.stderr


def test_registered_and_passing_in_consul(container: Container, passing: dict[str, Any]) -> None:
    assert passing["Service"]["Port"] == int(container.env["HTTP_PORT"])
    assert {check["Status"] for check in passing["Checks"]} == {"passing"}


def test_dockers_healthcheck_reports_healthy(container: Container, docker: Docker) -> None:
    def health() -> str:
        state = docker.inspect("container", container.name)["State"]
        return str(state.get("Health", {}).get("Status", "none"))

    # The image's HEALTHCHECK runs every 10 s; until its first run the status is "starting".
    assert eventually(lambda: health() == "healthy", timeout=60), health()


def test_a_request_is_handled_end_to_end(
    container: Container, passing: dict[str, Any], platform: Platform
) -> None:
    """POST to the API; the handler's result reaches the produced topic in the same trace."""
    route, body = sample_request(container.url)
    response = httpx.post(f"{container.url}{route}", json=body, timeout=10)
    stored = container.info.database is not None  # 201: saved with its event (the outbox)
    assert response.status_code == (201 if stored else 202), response.text
    trace_id = response.json()["trace_id"]

    records = read_until(platform.kafka.bootstrap, container.env["PRODUCES_TOPIC"], any, 60)
    assert len(records) == 1
    headers = {key: value.decode() for key, value in records[0].headers}
    assert trace_id in headers.get("traceparent", ""), headers
    result = json.loads(records[0].value)
    assert {key: result[key] for key in body} == body


def test_docker_stop_drains_deregisters_and_exits_in_time_without_errors(
    container: Container, passing: dict[str, Any], platform: Platform, docker: Docker
) -> None:
    """Last for each image: it stops the container, with batches in flight."""
    bootstrap = platform.kafka.bootstrap
    requested, created = container.env["CONSUMES_TOPIC"], container.env["PRODUCES_TOPIC"]
    grace = container.env["SHUTDOWN_GRACE_SECONDS"]
    produce_requests(bootstrap, requested, STOP_MESSAGES)
    assert eventually(lambda: sum(end_offsets(bootstrap, created).values()) > 1, timeout=60)

    # After `grace` seconds Docker would SIGKILL it (exit code 137).
    stopped_at = datetime.now(UTC).isoformat()
    docker("stop", "--time", grace, container.name, timeout=120)
    state = docker.inspect("container", container.name)["State"]
    results = read_until(bootstrap, created, lambda rs: len(rs) > STOP_MESSAGES, timeout=10)
    commits = committed(bootstrap, container.env["CONSUMER_GROUP"], requested)
    # The requests below the committed offsets. Not the offsets' sum: a transaction's
    # commit marker (the outbox relay's rounds land on this topic too) takes an offset.
    requests = read_until(bootstrap, requested, lambda rs: len(rs) > STOP_MESSAGES, timeout=10)
    handled = [record for record in requests if record.offset < commits[record.partition]]
    catalog = httpx.get(f"{platform.consul.http_url}/v1/catalog/service/{container.info.name}")
    logs = docker.logs(container.name, since=stopped_at)

    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), logs[-30:]
    assert container.service_id not in [entry["ServiceID"] for entry in catalog.json()]
    assert "Application shutdown complete." in "\n".join(logs)
    # Drained: every request it committed has its result, none twice, and nothing more.
    keys = [record.key for record in results]
    said = f"{len(keys)} results for {len(handled)} of {len(requests)} requests committed"
    assert len(set(keys)) == len(keys) == len(handled), said
    assert error_lines(logs) == []


# -------------------------------------------------------------------- helpers


def sample_request(url: str) -> tuple[str, dict[str, Any]]:
    """The API's POST route and a body made of its schema's examples."""
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    posts = [path for path, item in spec["paths"].items() if "post" in item]
    assert posts, "the service has no POST route: add a request for it to this test"
    schema_ref = spec["paths"][posts[0]]["post"]["requestBody"]["content"]["application/json"]
    schema = spec["components"]["schemas"][schema_ref["schema"]["$ref"].rsplit("/", 1)[-1]]
    body = {name: prop["examples"][0] for name, prop in schema["properties"].items()}
    return posts[0], body


def produce_requests(bootstrap: str, topic: str, count: int) -> None:
    """`count` requests on the consumed topic, each keyed by its own company name."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            for index in range(count):
                body = {"company_name": f"stop-{index}", "industry": "Testing"}
                await producer.send(topic, json.dumps(body).encode(), key=f"stop-{index}".encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())
