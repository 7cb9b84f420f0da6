"""Secrets from a real OpenBao: KV, each bad input's one line, rotating database credentials.

Run by the platform's tests/test_openbao.py, which starts OpenBao and PostgreSQL, runs the
platform's bootstrap for a service `alpha` (database credentials on a 30 s lease) and
names them in OPENBAO_TEST_* variables.
"""

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import hvac
import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from event_chassis import secrets
from event_chassis.database import Database
from event_chassis.health import Readiness, Writes
from event_chassis.relay import OutboxRelay
from event_chassis.testing import test_settings

from .example import Settings

pytestmark = pytest.mark.openbao

ADDR = os.environ.get("OPENBAO_TEST_ADDR", "")
ROOT = Path(os.environ.get("OPENBAO_TEST_ROOT_TOKEN_FILE", "/nonexistent"))
UNSEAL = Path(os.environ.get("OPENBAO_TEST_UNSEAL_KEY_FILE", "/nonexistent"))
CREDENTIALS = Path(os.environ.get("OPENBAO_TEST_CREDENTIALS", "/nonexistent"))
DATABASE = os.environ.get("OPENBAO_TEST_DATABASE_URL", "")  # no user or password in it
ROTATION_SECONDS = float(os.environ.get("OPENBAO_TEST_ROTATION_SECONDS", "75"))


@pytest.fixture
def alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment alpha is deployed with: where OpenBao is, its AppRole files."""
    for name in ("SECRETS_DIR", "KAFKA_SASL_PASSWORD", "CONSUL_HTTP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "alpha")
    monkeypatch.setenv("VAULT_ADDR", ADDR)
    monkeypatch.setenv("VAULT_ROLE_ID_FILE", str(CREDENTIALS / "alpha" / "role_id"))
    monkeypatch.setenv("VAULT_SECRET_ID_FILE", str(CREDENTIALS / "alpha" / "secret_id"))


def root() -> hvac.Client:
    return hvac.Client(url=ADDR, token=ROOT.read_text().strip())


@pytest.fixture
def sealed() -> Iterator[None]:
    root().sys.seal()
    try:
        yield
    finally:
        unseal()


def unseal() -> None:
    """Unsealed and active again: until it is active, a login fails with "local node not
    active but active cluster node not found" (CI saw that right after an unseal)."""
    root().sys.submit_unseal_key(UNSEAL.read_text().strip())
    deadline = time.monotonic() + 30
    while not active() and time.monotonic() < deadline:
        time.sleep(0.2)


def active() -> bool:
    """/sys/health answers 200 only when the server is unsealed and active."""
    try:
        with urllib.request.urlopen(f"{ADDR}/v1/sys/health", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:  # urllib's HTTPError (429 standby, 503 sealed) is an OSError
        return False


def one_line(error: pytest.ExceptionInfo[secrets.SecretsError]) -> str:
    line = str(error.value)
    assert "\n" not in line
    return line


@pytest.mark.usefixtures("alpha")
def test_a_service_reads_its_secrets_from_openbao_with_its_approle() -> None:
    settings = Settings(_env_file=None)

    assert settings.kafka_sasl_password.get_secret_value() == "alpha-sasl-value"
    assert settings.consul_http_token.get_secret_value() == "alpha-token"
    assert settings.secret_sources == {
        "kafka_sasl_password": "openbao secret/services/alpha",
        "consul_http_token": "openbao secret/services/alpha",
    }


@pytest.mark.usefixtures("alpha")
def test_a_file_still_wins_over_openbao(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "kafka_sasl_password").write_text("from-a-file")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))

    settings = Settings(_env_file=None)

    assert settings.kafka_sasl_password.get_secret_value() == "from-a-file"
    assert settings.consul_http_token.get_secret_value() == "alpha-token"


@pytest.mark.usefixtures("alpha")
def test_a_wrong_secret_id_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrong = tmp_path / "secret_id"
    wrong.write_text("00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("VAULT_SECRET_ID_FILE", str(wrong))

    with pytest.raises(secrets.SecretsError) as raised:
        Settings(_env_file=None)

    assert one_line(raised) == (
        f"OpenBao refused the approle login (VAULT_ROLE_ID_FILE={CREDENTIALS}/alpha/role_id, "
        f"VAULT_SECRET_ID_FILE={wrong}) at {ADDR}: invalid role or secret ID"
    )


@pytest.mark.usefixtures("alpha")
def test_a_missing_path_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_AUTH", "token")
    monkeypatch.setenv("VAULT_TOKEN_FILE", str(ROOT))  # may read anything: the path is missing
    monkeypatch.setenv("VAULT_SECRET_PATH", "services/nobody")

    with pytest.raises(secrets.SecretsError) as raised:
        Settings(_env_file=None)

    assert one_line(raised) == f"OpenBao has no secret at secret/services/nobody ({ADDR})"


@pytest.mark.usefixtures("alpha")
def test_another_services_path_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_SECRET_PATH", "services/beta")

    with pytest.raises(secrets.SecretsError) as raised:
        Settings(_env_file=None)

    assert one_line(raised) == (
        f"OpenBao refused reading secret/services/beta at {ADDR}: permission denied"
    )


@pytest.mark.usefixtures("alpha", "sealed")
def test_a_sealed_server_at_start_is_one_line() -> None:
    with pytest.raises(secrets.SecretsError) as raised:
        Settings(_env_file=None)

    assert one_line(raised) == f"OpenBao at {ADDR} is sealed (the approle login): unseal it first"


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110  (polls state another task sets)
            await asyncio.sleep(0.1)


@pytest.mark.usefixtures("alpha")
async def test_an_unreachable_openbao_leaves_the_database_waiting_and_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VAULT_DATABASE_ROLE", "alpha")
    monkeypatch.setenv("VAULT_KV", "false")  # the settings need nothing from it
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    readiness = Readiness()
    database = Database(test_settings(Settings, database_url=DATABASE), readiness)
    database.start()
    try:
        await until(lambda: "unreachable" in readiness.problems.get(secrets.SECRETS, ""))
        reason = readiness.problems[secrets.SECRETS]
    finally:
        await database.close()
    assert reason == (
        "database credentials: OpenBao unreachable at http://127.0.0.1:9 "
        "(the approle login): ConnectionError"
    )


@pytest.mark.usefixtures("alpha")
async def test_a_sealed_server_while_running_fails_readiness_before_the_credentials_lapse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VAULT_DATABASE_ROLE", "alpha")
    readiness = Readiness()
    config = secrets.SecretsConfig()
    credentials = secrets.DatabaseCredentials(config, DATABASE, readiness)
    await credentials.step()
    assert credentials.lease is not None
    credentials.lease.issued -= 25  # due for renewal
    root().sys.seal()
    try:
        with pytest.raises(secrets.SecretsError) as raised:
            await credentials.step()
        credentials._fail(str(raised.value))
    finally:
        unseal()
    reason = readiness.problems[secrets.SECRETS]
    assert reason.startswith(f"database credentials: OpenBao at {ADDR} is sealed (renewing lease")
    assert re.search(r"\(the current credentials lapse in [3-5]s\)$", reason), reason


@pytest.mark.usefixtures("alpha")
async def test_a_lease_that_cannot_be_renewed_is_replaced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VAULT_DATABASE_ROLE", "alpha")
    readiness = Readiness()
    credentials = secrets.DatabaseCredentials(secrets.SecretsConfig(), DATABASE, readiness)
    await credentials.step()
    assert credentials.lease is not None
    first = credentials.lease.username
    root().sys.revoke_lease(credentials.lease.lease_id)
    credentials.lease.issued -= 25
    await credentials.step()

    assert credentials.rotations == 1
    assert credentials.lease.username != first
    assert secrets.SECRETS not in readiness.problems
    assert any("not renewed" in record.getMessage() for record in caplog.records)


@pytest.mark.usefixtures("alpha")
async def test_no_connection_made_with_replaced_credentials_is_used_past_their_lapse(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pooled connection that logged in with the old credentials while they were being
    replaced (CI's two 503s under load) is not handed out again, and the outbox relay
    connects again with the new ones: when OpenBao then revokes the old lease, which ends
    the old user's sessions, a unit of work in hand and the relay go on unharmed."""
    monkeypatch.setenv("VAULT_DATABASE_ROLE", "alpha")
    caplog.set_level(logging.INFO, "event_chassis.relay")
    settings = test_settings(Settings, database_url=DATABASE, outbox_poll_seconds=0.1)
    database = Database(settings, Readiness())
    credentials = database.credentials
    assert credentials is not None
    await credentials.step()
    assert credentials.lease is not None
    old = credentials.lease
    await database.upgrade()  # the relay reads the outbox
    relay = OutboxRelay(settings, CollectorRegistry(), trace.get_tracer(__name__), Writes())
    relay.start()
    connect = asyncpg.connect

    async def rotating_midway(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        connection = await connect(*args, **kwargs)  # logged in as the old user
        monkeypatch.setattr(asyncpg, "connect", connect)
        old.issued, old.renewable = old.issued - 25, False  # due, and replaced, not renewed
        await credentials.step()
        return connection

    try:
        await until(lambda: bool(relay.owned))
        monkeypatch.setattr(asyncpg, "connect", rotating_midway)
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))  # pooled as it returns
        assert credentials.rotations == 1
        await until(lambda: relay.dsn == settings.database_dsn() and bool(relay.owned))
        async with database.transaction() as session:
            user = (await session.execute(text("SELECT session_user"))).scalar()
            root().sys.revoke_lease(old.lease_id)  # the old credentials lapse meanwhile
            await session.execute(text("SELECT 1"))
        await asyncio.sleep(1.5)  # the relay's rounds go on
    finally:
        await relay.stop()
        await database.close()
    assert user == credentials.lease.username != old.username
    relay_said = [r.getMessage() for r in caplog.records if r.name == "event_chassis.relay"]
    assert relay_said == ["Outbox relay: new database credentials; connecting with them"]


@pytest.mark.usefixtures("alpha")
async def test_rotating_credentials_under_load_fail_no_request_and_lose_no_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes at a steady pace while the 30 s credentials rotate at least twice."""
    monkeypatch.setenv("VAULT_DATABASE_ROLE", "alpha")
    readiness = Readiness()
    database = Database(test_settings(Settings, database_url=DATABASE), readiness)
    database.start()
    failed: list[str] = []
    written = 0
    try:
        await asyncio.wait_for(database.reachable.wait(), 30)
        async with database.transaction() as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS rotation (n int)"))
            await session.execute(text("TRUNCATE rotation"))
        deadline = time.monotonic() + ROTATION_SECONDS

        async def write(n: int) -> None:
            nonlocal written
            try:
                async with database.transaction() as session:
                    await session.execute(text("INSERT INTO rotation VALUES (:n)"), {"n": n})
                written += 1
            except Exception as error:
                failed.append(f"{type(error).__name__}: {error}"[:200])

        n = 0
        while time.monotonic() < deadline:
            await asyncio.gather(*(write(n + i) for i in range(10)))
            n += 10
            await asyncio.sleep(0.05)
        async with database.transaction() as session:
            stored = (await session.execute(text("SELECT count(*) FROM rotation"))).scalar()
        rotations = database.credentials.rotations if database.credentials else 0
    finally:
        await database.close()
    assert failed == []
    assert stored == written == n
    assert rotations >= int(ROTATION_SECONDS // 30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready_answer(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
            return 200, ""
    except urllib.error.HTTPError as error:
        return error.code, str(json.loads(error.read()).get("reason", ""))
    except OSError:
        return 0, ""


@pytest.mark.usefixtures("alpha")
def test_a_service_started_while_openbao_is_sealed_is_not_ready_with_the_reason_and_retries(
    tmp_path: Path,
) -> None:
    """The process serves /health/ready as 503 naming the sealed server, then starts
    for real once it is unsealed (its next reason is Kafka's, which is not running here)."""
    port = free_port()
    env = {**os.environ, "HTTP_PORT": str(port), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    log = tmp_path / "service.log"
    script = "from tests.example import create_service\nfrom event_chassis.server import run\n"
    root().sys.seal()
    try:
        with log.open("w") as out:
            process = subprocess.Popen(  # noqa: S603  (this interpreter, our script)
                [sys.executable, "-c", script + "run(create_service)"],
                cwd=Path(__file__).parents[1],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        waiting = poll(port, lambda reason: reason.startswith("secrets: "), process, 60)
    finally:
        unseal()
    try:
        started = poll(port, lambda reason: "Kafka" in reason, process, 60)
    finally:
        process.terminate()
        process.wait(30)
    sealed = f"secrets: OpenBao at {ADDR} is sealed (the approle login): unseal it first"
    assert waiting == (503, sealed)
    assert started[0] == 503
    assert "secrets read: starting" in log.read_text()


def poll(
    port: int, wanted: Callable[[str], bool], process: subprocess.Popen[bytes], seconds: float = 20
) -> tuple[int, str]:
    """/health/ready's status and reason once the reason is ``wanted``."""
    deadline = time.monotonic() + seconds
    while not wanted((answer := ready_answer(port))[1]):
        assert process.poll() is None, "the service exited"
        assert time.monotonic() < deadline, f"timed out; last answer {answer}"
        time.sleep(0.2)
    return answer
