"""Security defaults of the template and the platform, checked on the files themselves.

The compose file's own rules (loopback admin ports, non-root users, pinned
images) are in test_infrastructure_static.py; this file covers what every
service ships and the repository as a whole.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

TEMPLATE = REPO / "{{cookiecutter.service_name}}"
DOCKERFILES = [TEMPLATE / "Dockerfile", *sorted((REPO / "services").glob("*/Dockerfile"))]

# Shapes of real credentials; documented placeholders ("change-me", empty) do not match.
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."),
    "assigned password": re.compile(
        r"(?i)(password|passwd|secret|token)\s*[:=]\s*[\"']?(?!change-me|\$|\{|<|\"|'|$)"
        r"[A-Za-z0-9+/_-]{12,}"
    ),
}


def committed_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [REPO / name.decode() for name in listed if name]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_containers_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_base_images_are_pinned(dockerfile: Path) -> None:
    for image in re.findall(r"^FROM\s+(?:--\S+\s+)?(\S+)", dockerfile.read_text(), re.MULTILINE):
        if "{{" in image:  # the template's python_version answer
            image = re.sub(r"\{\{.*?\}\}", "3.11", image)
        _, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{image} is not pinned"


def test_ci_workflow_actions_and_images_are_pinned() -> None:
    workflow = (TEMPLATE / ".github" / "workflows" / "ci.yml").read_text()
    for ref in re.findall(r"uses:\s*(\S+)", workflow):
        assert "@" in ref and not ref.endswith(("@main", "@master", "@latest")), ref
    assert ":latest" not in workflow


def test_no_secret_in_any_committed_file() -> None:
    found = []
    for path in committed_files():
        if not path.is_file() or path.suffix in {".png", ".jar"}:
            continue
        text = path.read_text(errors="replace")
        found += [
            f"{path.relative_to(REPO)}: {kind}"
            for kind, pattern in SECRET_PATTERNS.items()
            if pattern.search(text)
        ]
    assert found == []


def test_secret_patterns_catch_real_looking_values() -> None:
    # Assembled at run time, so this file does not trip its own scan.
    assert SECRET_PATTERNS["assigned password"].search("KAFKA_SASL_PASSWORD=" + "s3cr3tV4lue99x")
    assert SECRET_PATTERNS["AWS access key"].search("AKIA" + "IOSFODNN7EXAMPLE")
    assert not SECRET_PATTERNS["assigned password"].search("GRAFANA_ADMIN_PASSWORD=change-me")


@pytest.mark.parametrize(
    "variable",
    [
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "CONSUL_HTTP_TOKEN",
    ],
)
def test_kafka_tls_sasl_and_consul_acl_are_documented(variable: str) -> None:
    """The switches exist in config.py (tested in the service's own tests) and in its README."""
    assert f"`{variable}`" in (TEMPLATE / "README.md").read_text()
    config = (TEMPLATE / "src" / "{{cookiecutter.package_name}}" / "config.py").read_text()
    assert variable.lower() in config
