"""The services' PostgreSQL databases without a server: names, SCRAM verifiers, secret files,
the idempotent SQL, the status report, who may reach a data directory, and what a service
declares. tests/test_native_servers.py runs the real server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import stat
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from platform_deploy import databases as deploy_databases
from platform_deploy.__main__ import main as deploy_step
from platform_native.databases import Databases, role_name, scram_verifier, write_secret
from platform_native.processes import Account
from platform_native.servers.postgres import reachable
from platform_native.services import ServiceInfo
from platform_native.tools import ToolError

from .conftest import REPO


class FakeServer:
    """Records each psql script; answers from ``answers`` (database -> output or error)."""

    def __init__(self, answers: dict[str, str | ToolError] | None = None) -> None:
        self.scripts: list[tuple[str, str]] = []
        self.answers = answers or {}

    def __call__(self, database: str, script: str) -> str:
        self.scripts.append((database, script))
        answer = self.answers.get(database, "")
        if isinstance(answer, ToolError):
            raise answer
        return answer


def test_scram_verifier_matches_rfc_7677() -> None:
    """The keys of RFC 7677's example (user "user", password "pencil") sign its exchange."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_verifier("pencil", salt, 4096)
    method, rest = verifier.split("$", 1)
    assert method == "SCRAM-SHA-256" and rest.startswith("4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    stored_key, server_key = (base64.b64decode(k) for k in rest.split("$")[1].split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    auth += f"c=biws,r={nonce}"
    server_signature = hmac.digest(server_key, auth.encode(), "sha256")
    assert base64.b64encode(server_signature).decode() == (
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.digest(stored_key, auth.encode(), "sha256")
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time


def test_role_names_are_plain_identifiers_and_never_a_built_in() -> None:
    assert role_name("billing-api") == "billing_api"
    assert role_name("value-architect") == "value_architect"
    for bad in ("postgres", "pg_monitor", "template1", "Billing", "1st", "a;drop", "x" * 64):
        with pytest.raises(ValueError):
            role_name(bad)


def test_secrets_are_written_for_their_owner_only(tmp_path: Path) -> None:
    loose = tmp_path / "secrets" / "x.url"
    loose.parent.mkdir()
    loose.write_text("old")
    loose.chmod(0o644)

    write_secret(loose, "new\n")
    fresh = write_secret(tmp_path / "new" / "y.url", "y\n")

    assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_text() == "new\n"
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700


def _password(dsn: str) -> str:
    password = urllib.parse.urlsplit(dsn).password
    assert password
    return password


def test_ensure_sends_only_a_verifier_and_keeps_the_password(tmp_path: Path) -> None:
    server = FakeServer()
    found = Databases(server, tmp_path / "secrets", "127.0.0.1:5555")

    dsn = found.ensure("billing-api")

    password = _password(dsn)
    assert dsn == f"postgresql://billing_api:{password}@127.0.0.1:5555/billing_api"
    assert found.url_file("billing-api").read_text() == dsn + "\n"
    assert stat.S_IMODE(found.url_file("billing-api").stat().st_mode) == 0o600
    [(database, script)] = server.scripts
    assert database == "postgres" and password not in script
    assert "PASSWORD 'SCRAM-SHA-256$4096:" in script
    assert "REVOKE ALL ON DATABASE billing_api FROM PUBLIC" in script
    assert "CREATE DATABASE billing_api OWNER billing_api" in script

    moved = Databases(server, tmp_path / "secrets", "127.0.0.1:6666")  # restarted elsewhere
    assert moved.ensure("billing-api") == dsn.replace("5555", "6666")
    assert _password(found.ensure("orders")) != password  # each service its own


def test_report_lists_each_database_and_its_outbox_backlog(tmp_path: Path) -> None:
    server = FakeServer(
        {
            "postgres": "billing_api\norders\n",
            "billing_api": "7455 kB, outbox backlog 3\n",
            "orders": ToolError('psql (orders) failed: ERROR:  column "published_at" missing'),
        }
    )
    found = Databases(server, tmp_path, "127.0.0.1:5555")

    rows = found.report(["billing-api", "orders", "audit"])

    unreadable = 'psql (orders) failed: ERROR:  column "published_at" missing'
    assert rows == [
        ("billing-api", "database billing_api (7455 kB, outbox backlog 3)"),
        ("orders", f"database orders (outbox backlog unreadable: {unreadable})"),
        ("audit", "database audit missing (`up` creates it)"),
    ]
    assert "'billing_api','orders','audit'" in server.scripts[0][1]
    assert "published_at IS NULL" in server.scripts[1][1]


def test_reachable_follows_the_traverse_bits_of_every_folder() -> None:
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # under /tmp: every user can get this far
    try:
        inner = base / "open" / "inner"
        inner.mkdir(parents=True)
        base.chmod(0o711)
        (base / "open").chmod(0o755)
        owner = Account("owner", os.getuid(), os.getgid())
        stranger = Account("stranger", os.getuid() + 4242, os.getgid() + 4242)
        member = Account("member", os.getuid() + 4242, (base / "open").stat().st_gid)
        assert reachable(inner, stranger)

        (base / "open").chmod(0o750)
        assert not reachable(inner, stranger)
        assert reachable(inner, member)
        (base / "open").chmod(0o700)
        assert not reachable(inner, member)
        assert reachable(inner, owner)
    finally:
        shutil.rmtree(base)


def _service_with(tmp_path: Path, extra: str) -> Path:
    service = tmp_path / "value-architect"
    shutil.copytree(REPO / "services" / "value-architect", service, ignore=_no_venv)
    pyproject = service / "pyproject.toml"
    text = re.sub(r"(?m)^database = .*\n", "", pyproject.read_text())  # the answer it has
    text = text.replace("[tool.event-platform]\n", f"[tool.event-platform]\n{extra}")
    pyproject.write_text(text)
    return service


def _no_venv(_folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name in {".venv", "__pycache__"}]


def test_a_service_declares_its_database(tmp_path: Path) -> None:
    assert ServiceInfo.read(REPO / "services" / "value-architect").database == "postgres"
    service = _service_with(tmp_path, "")

    assert ServiceInfo.read(service).database is None
    assert deploy_databases.declared(tmp_path) == []


def test_only_postgres_is_a_database_kind(tmp_path: Path) -> None:
    _service_with(tmp_path, 'database = "mysql"\n')

    with pytest.raises(ValueError, match="mysql"):
        deploy_databases.declared(tmp_path)


def test_without_a_native_server_the_step_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(deploy_databases.NoDatabaseServer, match=r"deploy-all\.sh --native up"):
        deploy_databases.native(tmp_path)


def test_with_docker_psql_runs_in_the_postgres_container(tmp_path: Path) -> None:
    """`databases --compose`: psql through `docker compose exec`; DSNs name `postgres:5432`."""
    docker = tmp_path / "docker"  # records its arguments, answers nothing
    docker.write_text('#!/bin/sh\nprintf "%s\\n" "$@" >> "$0.calls"\ncat >/dev/null\n')
    docker.chmod(0o755)
    _service_with(tmp_path / "services", 'database = "postgres"\n')
    state = tmp_path / "state"
    step = ["--services-dir", str(tmp_path / "services"), "databases", "--state-dir", str(state)]

    assert deploy_step([*step, "--compose", f"{docker} compose --project-directory /repo"]) == 0

    calls = Path(f"{docker}.calls").read_text().splitlines()
    head = ["compose", "--project-directory", "/repo", "exec", "-T", "postgres", "psql"]
    assert calls[: len(head)] == head
    assert {"--username=postgres", "--dbname=postgres", "--set=ON_ERROR_STOP=1"} <= set(calls)
    url_file = state / "postgres" / "value_architect.url"
    assert "@postgres:5432/value_architect" in url_file.read_text()
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
