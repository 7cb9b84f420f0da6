"""A generated service whose secrets come from OpenBao, against the secured Kafka (SASL_SSL,
SCRAM) and Consul with ACLs: nothing secret in its environment or in any line it logs.

The service is the rendered template on the chassis, run as its own process with only the
AppRole's files and OpenBao's address; the platform's bootstrap (platform_deploy.openbao)
put its Kafka password and Consul token in OpenBao.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import hvac
import pytest

from platform_deploy import openbao
from platform_native import installer
from platform_native.servers import Consul, Kafka, OpenBao, running
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .rendering import render, wheelhouse
from .test_secured_service import API, get, passing, read, topics, until

pytestmark = pytest.mark.reliability

# A variable whose name says it holds a secret (its _FILE twin names a file: fine).
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|SECRET_ID|ROLE_ID)$")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kafka, Consul, OpenBao]]:
    root = tmp_path_factory.mktemp("secrets-servers")
    kafka, consul = Kafka(root / "kafka", secured=True), Consul(root / "consul", acl=True)
    bao = OpenBao(root / "openbao")
    with running(kafka, consul, bao):
        yield kafka, consul, bao


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServiceInfo, Path, Path]:
    root = tmp_path_factory.mktemp("secrets-app")
    info = ServiceInfo.read(render(root))
    script = install(info.directory, wheels=wheelhouse())
    installer.install(info.directory / ".venv" / "bin" / "python", "hvac>=2.4,<3")  # `vault`
    return info, script, root


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def test_a_service_takes_its_kafka_password_and_consul_token_from_openbao(
    secured: tuple[Kafka, Consul, OpenBao], service: tuple[ServiceInfo, Path, Path]
) -> None:
    kafka, consul, bao = secured
    info, script, root = service
    user, password = f"svc-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    kafka.add_user(user, password)
    token = consul.service_token(info.name)
    values = {"kafka_sasl_password": password, "consul_http_token": token}
    credentials = openbao.bootstrap(
        hvac.Client(url=bao.url, token=bao.root_token),
        [info.name],
        root / "credentials",
        secrets={info.name: values},
    )[info.name]
    env = topics(kafka, "openbao")
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.secure_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SSL_CAFILE": str(kafka.ca_file),
        "CONSUL_HTTP_ADDR": consul.http_url,
        "CONSUL_CHECK_INTERVAL": "1s",
        "VAULT_ADDR": bao.url,
        "VAULT_ROLE_ID_FILE": str(credentials.role_id_file),
        "VAULT_SECRET_ID_FILE": str(credentials.secret_id_file),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",  # every line the chassis can write is scanned below
        "KAFKA_CHECK_INTERVAL_SECONDS": "1",
        **env,
    }
    process = ServiceProcess(info, script, settings, root / f"openbao-{user}.log").start()
    try:
        ready = until(lambda: (r := get(f"{process.url}/health/ready")) and r.status_code == 200)
        registered = until(lambda: passing(consul, info.name))
        accepted = [
            httpx.post(f"{process.url}{API}", json={"company_name": f"bao-{i}", "industry": "x"})
            for i in range(5)
        ]
        results = read(kafka, env["PRODUCES_TOPIC"], 5)
        seen = environ(process.pid)
    finally:
        process.terminate()
    hidden = [
        password,
        token,
        credentials.role_id_file.read_text().strip(),
        credentials.secret_id_file.read_text().strip(),
    ]
    log = process.log_path.read_text(errors="replace")
    in_environment = [name for name, value in seen.items() if value and SECRET_NAME.search(name)]
    in_environment += [name for name, value in seen.items() if any(h in value for h in hidden)]
    in_log = sum(1 for line in log.splitlines() if any(h in line for h in hidden))
    audit = [json.loads(line) for line in bao.audit_log.read_text().splitlines() if line]
    reads = [
        entry
        for entry in audit
        if entry["type"] == "response"
        and entry["request"]["path"] == f"secret/data/services/{info.name}"
        and (entry.get("auth") or {}).get("metadata", {}).get("role_name") == info.name
    ]
    passed = (
        bool(ready)
        and bool(registered)
        and all(response.status_code == 202 for response in accepted)
        and len(results) == 5
        and not in_environment
        and in_log == 0
        and bool(reads)
    )
    report.record(
        "security.secrets_from_openbao",
        "The service reads its Kafka SASL password and Consul ACL token from OpenBao (its "
        "AppRole from 0600 files): it produces, consumes and registers against the secured "
        "servers, no secret is in its environment or in any of its log lines, and the audit "
        "log shows its read",
        passed,
        results_read=len(results),
        passing_in_consul=len(registered or []),
        secret_variables_in_environment=in_environment,
        log_lines=len(log.splitlines()),
        log_lines_with_a_secret=in_log,
        audited_reads=len(reads),
    )
    assert passed, (in_environment, in_log, len(reads), process.log_tail())
