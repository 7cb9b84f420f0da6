"""Security defaults of the template and the platform, checked on the files and in-process.

- every container image runs as a numeric non-root user and is pinned (no tag
  `latest`, no tag missing), in the Dockerfiles, the compose file and the
  generated CI workflow;
- the unauthenticated admin APIs (Kong 8001/8444, Consul 8500) are published
  on 127.0.0.1 only;
- no secret or token in any committed file;
- Kafka SASL/TLS and a Consul ACL token are switched on through environment
  variables alone: a rendered service is configured by env only, and the
  aiokafka client and the Consul client it builds are inspected in its own
  Python; each variable is documented in the service README.

No server is needed. What each test found goes to docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_native.services import install

from . import report
from .conftest import REPO
from .rendering import render

TEMPLATE = REPO / "{{cookiecutter.service_name}}"
COMPOSE_FILE = REPO / "docker-compose.infrastructure.yml"
DOCKERFILES = [TEMPLATE / "Dockerfile", *sorted((REPO / "services").glob("*/Dockerfile"))]
WORKFLOWS = [
    TEMPLATE / ".github" / "workflows" / "ci.yml",
    *sorted((REPO / "services").glob("*/.github/workflows/*.yml")),
]
ADMIN_PORTS = {8001: "Kong admin", 8444: "Kong admin (TLS)", 8500: "Consul HTTP"}


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def committed_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [REPO / name.decode() for name in listed if name]


# ------------------------------------------------------------------ images


def final_stage(dockerfile: Path) -> str:
    text = dockerfile.read_text()
    stages = re.split(r"^FROM\s", text, flags=re.MULTILINE)
    return stages[-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=rel)
def test_containers_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", final_stage(dockerfile), re.MULTILINE)
    user = users[-1].split(":")[0] if users else None
    passed = user is not None and user.isdigit() and int(user) != 0
    report.record(
        f"security.non_root_user[{rel(dockerfile)}]",
        "The image's final stage ends with USER set to a numeric non-root uid",
        passed,
        user=user,
    )
    assert passed, f"{rel(dockerfile)}: final USER is {user!r}"


def image_tag(image: str) -> str:
    """The tag of `image` ("" if none); a digest counts as pinned."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    name = image.rsplit("/", 1)[-1]
    return name.partition(":")[2]


def dockerfile_images(dockerfile: Path) -> list[str]:
    text = re.sub(r"\{\{.*?\}\}", "3.11", dockerfile.read_text())  # the python_version answer
    stages = set(re.findall(r"^FROM\s+.*\bAS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))
    images = re.findall(r"^FROM\s+(?:--\S+\s+)?(\S+)", text, re.MULTILINE)
    images += re.findall(r"^COPY\s+--from=(\S+)", text, re.MULTILINE)
    return [image for image in images if image not in stages]


def compose_images() -> list[str]:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return [spec.get("image", f"<{name}: no image>") for name, spec in services.items()]


def workflow_images(workflow: Path) -> list[str]:
    """Images a workflow runs or builds: container/services images and docker -t tags."""
    text = re.sub(r"\{\{.*?\}\}", "service", workflow.read_text())  # template answers
    images = re.findall(r"^\s*(?:image|container):[ \t]*[\"']?([^\s\"'#]+)", text, re.MULTILINE)
    images += re.findall(r"docker://(\S+)", text)
    images += re.findall(r"docker build[^\n]*?-t\s+[\"']?([^\s\"']+)", text)
    return images


def test_no_image_is_latest_or_untagged() -> None:
    images = {rel(d): dockerfile_images(d) for d in DOCKERFILES}
    images[rel(COMPOSE_FILE)] = compose_images()
    for workflow in WORKFLOWS:
        images[rel(workflow)] = workflow_images(workflow)
    unpinned = [
        f"{where}: {image}"
        for where, found in images.items()
        for image in found
        if image_tag(image) in {"", "latest"}
    ]
    passed = not unpinned and all(images[rel(d)] for d in DOCKERFILES)
    report.record(
        "security.pinned_images",
        "No image tag in the Dockerfiles, docker-compose.infrastructure.yml or the generated "
        "CI workflow is `latest` or missing",
        passed,
        images_checked=sum(len(found) for found in images.values()),
        unpinned=unpinned,
    )
    assert passed, unpinned


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=rel)
def test_ci_workflow_runners_and_actions_are_pinned(workflow: Path) -> None:
    text = workflow.read_text()
    loose = [
        ref
        for ref in re.findall(r"uses:\s*(\S+)", text)
        if "@" not in ref or ref.endswith(("@main", "@master", "@latest", "@HEAD"))
    ]
    loose += [runner for runner in re.findall(r"runs-on:\s*(\S+)", text) if "latest" in runner]
    assert not loose, f"{rel(workflow)}: {loose}"


def test_image_checks_catch_unpinned_images() -> None:
    assert image_tag("kong") == ""
    assert image_tag("kong:latest") == "latest"
    assert image_tag("registry:5000/team/app") == ""
    assert image_tag("registry:5000/team/app:1.2.3") == "1.2.3"
    assert image_tag("python@sha256:abc") == "sha256:abc"


# ------------------------------------------------------------------- ports


def published_ports(spec: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """(host IP, container port) of each published port; "" means every interface."""
    for port in spec.get("ports", []):
        if isinstance(port, dict):
            yield str(port.get("host_ip", "")), int(port["target"])
            continue
        text = re.sub(r"\$\{[^}:]+:-([^}]*)\}", r"\1", str(port)).split("/")[0]
        parts = text.rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else ""
        yield host_ip.strip("[]"), int(parts[-1].split("-")[0])


def test_admin_apis_are_published_on_loopback_only() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    published = {
        f"{name}:{port}": host_ip
        for name, spec in services.items()
        for host_ip, port in published_ports(spec)
        if port in ADMIN_PORTS
    }
    exposed = {where: ip for where, ip in published.items() if ip != "127.0.0.1"}
    passed = (
        not exposed
        and published.get("kong:8001") == "127.0.0.1"
        and published.get("consul:8500") == "127.0.0.1"
    )
    report.record(
        "security.admin_ports_loopback",
        "Kong admin (8001/8444) and Consul HTTP (8500) are published on 127.0.0.1 only",
        passed,
        published=published,
        kong_8444_published="kong:8444" in published,
        exposed=exposed,
    )
    assert passed, published


def test_port_parsing() -> None:
    spec = {"ports": ["8001:8001", "127.0.0.1:${P:-8500}:8500", "0.0.0.0:8444:8444/tcp"]}
    assert list(published_ports(spec)) == [("", 8001), ("127.0.0.1", 8500), ("0.0.0.0", 8444)]


# ----------------------------------------------------------------- secrets

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_\w{50,})"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Stripe key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{16,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."),
    "password in URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@\"'<>]+:[^\s/@\"'<>${}]{3,}@"),
}
# `password = "..."`, `"token": "..."`, `KAFKA_SASL_PASSWORD=...`: the value is checked below.
ASSIGNED = re.compile(
    r"(?i)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"',;)}\]]+)"
)
PLACEHOLDERS = re.compile(r"(?i)^(change-?me|example|placeholder|dummy|redacted|x+|\*+)$")


def real_looking(value: str) -> bool:
    """A value that looks like a credential, not code, a reference or a placeholder."""
    if len(value) < 8 or PLACEHOLDERS.match(value) or re.search(r"[$*<>{}()\[\]%]", value):
        return False  # a placeholder, or shell, regex or template syntax
    if re.fullmatch(r"[A-Za-z_][\w.]*(\(\)?)?", value) and not re.search(r"\d", value):
        return False  # an identifier or attribute: settings.consul_http_token
    return bool(re.search(r"[A-Za-z]", value) and re.search(r"\d", value)) or len(value) >= 20


def secrets_in(text: str) -> list[str]:
    found = [kind for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    found += [
        f"assigned value {match.group(0)[:40]!r}"
        for match in ASSIGNED.finditer(text)
        if real_looking(match.group("value"))
    ]
    return found


def test_no_secret_in_any_committed_file() -> None:
    files = [path for path in committed_files() if path.is_file()]
    found = []
    for path in files:
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        found += [f"{rel(path)}: {what}" for what in secrets_in(data.decode(errors="replace"))]
    dotenv = [rel(path) for path in files if path.name == ".env"]
    passed = not found and not dotenv
    report.record(
        "security.no_committed_secrets",
        "No private key, cloud key, token or real-looking password in any committed file; "
        "no .env committed (only .env.example with placeholders)",
        passed,
        files_scanned=len(files),
        findings=found,
        committed_dotenv=dotenv,
    )
    assert passed, found + dotenv


@pytest.mark.parametrize(
    "text",
    [
        # Split, so that this file does not trip its own scan.
        "KAFKA_SASL_PASSWORD=" + "s3cr3tV4lue99x",
        "password: " + '"hunter2hunter2"',
        '{"token": ' + '"0f9e8d7c6b5a4f3e2d1c"}',
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "aws_access_key_id = " + "AKIA" + "IOSFODNN7EXAMPLE",
        "amqp://svc:" + "pa55word@broker:5672/",
        "ghp_" + "a1" * 18,
    ],
)
def test_secret_scan_catches_real_looking_values(text: str) -> None:
    assert secrets_in(text)


@pytest.mark.parametrize(
    "text",
    [
        "GRAFANA_ADMIN_PASSWORD=change-me",
        "GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:?set it in .env}",
        "token=settings.consul_http_token.get_secret_value() or None,",
        "kafka_sasl_password: SecretStr = SecretStr('')",
        "| `CONSUL_HTTP_TOKEN` | empty | ACL token |",
        "password=<your password>",
    ],
)
def test_secret_scan_allows_placeholders_and_code(text: str) -> None:
    assert not secrets_in(text)


# ------------------------------------- Kafka TLS/SASL and Consul ACL by env

PROBE = r'''
"""Build the service's clients from the environment alone and print what they use."""
import asyncio, json, os, ssl
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from secure_probe import discovery
from secure_probe.app import create_broker
from secure_probe.config import Settings


async def consul_headers(settings):
    """Headers the Consul client sends, caught by a one-shot HTTP server."""
    seen = {}

    async def answer(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        for line in head.split("\r\n")[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                seen[key.strip().lower()] = value.strip()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = settings.model_copy(update={"consul_http_addr": f"http://127.0.0.1:{port}"})
    client = discovery.consul_client(settings)
    try:
        await client.agent.services()
    finally:
        await client.close()
        server.close()
    return seen


async def main():
    settings = Settings(_env_file=None)
    broker = create_broker(settings, TracerProvider(), CollectorRegistry())
    producer = AIOKafkaProducer(**broker._connection_kwargs)  # what FastStream hands aiokafka
    client = producer.client
    context = client._ssl_context
    headers = await consul_headers(settings)
    print(json.dumps({
        "security_protocol": client._security_protocol,
        "sasl_mechanism": client._sasl_mechanism,
        "sasl_username": client._sasl_plain_username,
        "sasl_password_set": bool(client._sasl_plain_password),
        "sasl_password_matches":
            client._sasl_plain_password == os.environ.get("KAFKA_SASL_PASSWORD"),
        "tls": context is not None,
        "tls_verifies": context is not None and context.verify_mode == ssl.CERT_REQUIRED
                        and context.check_hostname,
        "tls_ca_certs": len(context.get_ca_certs()) if context is not None else 0,
        "consul_token_header": headers.get("x-consul-token"),
    }))
    await producer.stop()


asyncio.run(main())
'''

SECURITY_VARIABLES = [
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "CONSUL_HTTP_TOKEN",
]


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run PROBE in a freshly rendered service's Python with the given environment."""
    root = tmp_path_factory.mktemp("security")
    service = render(root, service_name="secure-probe")
    script = root / "probe.py"
    script.write_text(PROBE)
    # The rendered repository's own service already has the same dependencies
    # installed; use them if they import the rendered package, else install.
    python = REPO / "services" / "value-architect" / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(service / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    check = [str(python), "-c", "import secure_probe.app, aiokafka"]
    if not python.exists() or subprocess.run(check, env=env, capture_output=True).returncode:
        python = install(service).parent / "python"
    ca = subprocess.run(
        [str(python), "-c", "import certifi; print(certifi.where())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    def run(**variables: str) -> dict[str, Any]:
        clean = {k: v for k, v in env.items() if k not in SECURITY_VARIABLES}
        variables = {k: v.replace("<ca>", ca) for k, v in variables.items()}
        result = subprocess.run(
            [str(python), str(script)],
            env={**clean, **variables},
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return figures

    yield run


SWITCHES: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "default plaintext": (
        {},
        {"security_protocol": "PLAINTEXT", "tls": False, "consul_token_header": None},
    ),
    "TLS": (
        {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "<ca>"},
        {"security_protocol": "SSL", "tls": True, "tls_verifies": True},
    ),
    "SASL PLAIN": (
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "pw-from-env",
        },
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "svc",
            "sasl_password_matches": True,
            "tls": False,
        },
    ),
    "SASL SCRAM over TLS and a Consul ACL token": (
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "pw-from-env",
            "KAFKA_SSL_CAFILE": "<ca>",
            "CONSUL_HTTP_TOKEN": "token-from-env",
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "svc",
            "sasl_password_matches": True,
            "tls": True,
            "tls_verifies": True,
            "consul_token_header": "token-from-env",
        },
    ),
}


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_kafka_tls_sasl_and_consul_acl_are_switched_on_by_env_alone(
    probe: Any, switch: str
) -> None:
    variables, expected = SWITCHES[switch]
    seen = probe(**variables)
    mismatched = {key: seen.get(key) for key, value in expected.items() if seen.get(key) != value}
    if variables.get("KAFKA_SSL_CAFILE") and not seen["tls_ca_certs"]:
        mismatched["tls_ca_certs"] = 0
    passed = not mismatched
    report.record(
        f"security.env_switch[{switch}]",
        "Set through environment variables only, the service's aiokafka client and Consul "
        "client use exactly this security configuration",
        passed,
        env=sorted(variables),
        **{key: seen[key] for key in expected},
        tls_ca_certs_loaded=seen["tls_ca_certs"],
    )
    assert passed, mismatched


def test_security_switches_are_documented_in_the_service_readme() -> None:
    readme = (TEMPLATE / "README.md").read_text()
    config = (TEMPLATE / "src" / "{{cookiecutter.package_name}}" / "config.py").read_text()
    undocumented = [v for v in SECURITY_VARIABLES if f"`{v}`" not in readme]
    unread = [v for v in SECURITY_VARIABLES if v.lower() not in config]
    passed = not undocumented and not unread
    report.record(
        "security.env_switches_documented",
        "Every Kafka TLS/SASL and Consul ACL variable is read by config.py and documented "
        "in the service README",
        passed,
        variables=len(SECURITY_VARIABLES),
        undocumented=undocumented,
        not_in_config=unread,
    )
    assert passed, (undocumented, unread)
