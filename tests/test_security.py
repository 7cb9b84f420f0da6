"""Security defaults of the template and the platform, checked on the files and in-process.

- every container image runs as a numeric non-root user and is pinned (no tag
  `latest`, no tag missing), in the Dockerfiles, the compose file and the
  generated CI workflow;
- the unauthenticated admin APIs (Kong 8001/8444, Consul 8500) are published
  on 127.0.0.1 only;
- no secret or token in any committed file;
- every Kafka SASL/TLS and Consul ACL variable is read by the chassis' settings and
  documented (the chassis' own tests check what each builds; the secured-server
  tests check that a service really connects with them).

No server is needed.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import report
from .conftest import REPO

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

SECURITY_VARIABLES = [
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "CONSUL_HTTP_TOKEN",
]


def test_security_switches_are_documented_in_the_chassis_readme() -> None:
    readme = (REPO / "chassis" / "README.md").read_text()
    config = (REPO / "chassis" / "src" / "event_chassis" / "settings.py").read_text()
    undocumented = [v for v in SECURITY_VARIABLES if f"`{v}`" not in readme]
    unread = [v for v in SECURITY_VARIABLES if v.lower() not in config]
    passed = not undocumented and not unread
    report.record(
        "security.env_switches_documented",
        "Every Kafka TLS/SASL and Consul ACL variable is read by the chassis' settings and "
        "documented in its README",
        passed,
        variables=len(SECURITY_VARIABLES),
        undocumented=undocumented,
        not_in_config=unread,
    )
    assert passed, (undocumented, unread)
