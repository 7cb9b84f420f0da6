"""Rotating database credentials under load, against the real OpenBao, PostgreSQL and Kafka.

A stateful service (database=postgres) takes its PostgreSQL login from OpenBao's database
engine on a 30 s lease that cannot outlive 30 s, so it must take new credentials about
every 20 s, while requests arrive at a steady 200 a second for three minutes (in `make
test` and `make report` alike). Every write must be answered 201, every committed
request's event must reach Kafka, and the rotations are counted from OpenBao's audit log.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest

from platform_deploy import openbao
from platform_native import servers
from platform_native.databases import SUPERUSER, role_name
from platform_native.services import ServiceInfo, ServiceProcess, install

from . import report
from .conftest import Platform
from .kafka_clients import create_topics, read_until
from .postgres_clients import psql
from .rendering import render, wheelhouse
from .test_reliability_state import Writer, wait_ready

TTL = "30s"


@dataclass
class Rig:
    info: ServiceInfo
    script: Path
    root: Path
    postgres: servers.Postgres
    bao: servers.OpenBao


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("reliability-secrets")
    info = ServiceInfo.read(render(root, database="postgres"))
    script = install(info.directory, wheels=wheelhouse())  # with its `vault` extra
    postgres, bao = servers.Postgres(root / "postgres"), servers.OpenBao(root / "openbao")
    with servers.running(postgres, bao):
        yield Rig(info, script, root, postgres, bao)


def issued(bao: servers.OpenBao, role: str) -> int:
    """Credentials OpenBao issued to ``role``, counted from its audit log."""
    lines = bao.audit_log.read_text().splitlines()
    return sum(
        1
        for entry in map(json.loads, lines)
        if entry["type"] == "response"
        and entry["request"]["path"] == f"database/creds/{role}"
        and "error" not in entry
    )


def run(platform: Platform, rig: Rig, seconds: float, label: str) -> None:
    name = f"rotation-{uuid.uuid4().hex[:6]}"  # its role, database and topics
    topics = {
        "CONSUMES_TOPIC": f"{name}.requested",
        "PRODUCES_TOPIC": f"{name}.created",
        "DEAD_LETTER_TOPIC": f"{name}.dead-letter",
        "CONSUMER_GROUP": name,
    }
    create_topics(platform.kafka, [v for k, v in topics.items() if k.endswith("_TOPIC")])
    rig.postgres.ensure_database(name)
    admin = openbao.PostgresAdmin(
        rig.postgres.address, SUPERUSER, rig.postgres.password_file.read_text().strip()
    )
    [credentials] = openbao.bootstrap(
        hvac.Client(url=rig.bao.url, token=rig.bao.root_token),
        [name],
        rig.root / "credentials",
        database=admin,
        database_services=[name],
        ttl=TTL,
        max_ttl=TTL,
    ).values()
    env = platform.service_env(
        **topics,
        VAULT_ADDR=rig.bao.url,
        VAULT_ROLE_ID_FILE=str(credentials.role_id_file),
        VAULT_SECRET_ID_FILE=str(credentials.secret_id_file),
        VAULT_SECRET_PATH=f"services/{name}",  # its role here, not the template's name
        VAULT_DATABASE_ROLE=name,
        DATABASE_URL=f"postgresql://{rig.postgres.address}/{role_name(name)}",
        DATABASE_CHECK_INTERVAL_SECONDS="1",
        OUTBOX_POLL_SECONDS="0.5",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",  # a load test: 1 % of traces
    )
    log = rig.root / f"{name}.log"
    process = ServiceProcess(rig.info, rig.script, env, log).start()
    try:
        wait_ready(process)
        before = issued(rig.bao, name)
        url = f"{process.url}/api/v1/value-models"
        writer = Writer(url, per_second=200, threads=16).start()
        time.sleep(seconds)
        writer.stop()
        rotations = issued(rig.bao, name) - before
        superuser = f"postgresql://{SUPERUSER}:{admin.password}@{admin.address}/{role_name(name)}"
        committed = psql(superuser, "SELECT count(*) FROM requests").stdout.strip()
        events = read_until(
            platform.kafka.bootstrap,
            topics["CONSUMES_TOPIC"],
            lambda records: len({r.value for r in records}) >= int(committed or 0),
            90,
        )
    finally:
        process.terminate()
    delivered = len({json.loads(record.value)["event_id"] for record in events})
    failed = writer.posted - writer.answers[201]
    lost = int(committed or 0) - delivered
    passed = failed == 0 and lost == 0 and int(committed or 0) == writer.answers[201]
    passed = passed and rotations >= int(seconds // 30)
    report.record(
        f"secrets.rotation_under_load_{label}",
        f"Database credentials on a {TTL} lease from OpenBao, {seconds:.0f} s of writes paced "
        "at 200/s (the rate reached is a figure): no failed request, no lost event, and the "
        f"credentials rotated at least {int(seconds // 30)} times (counted in the audit log)",
        passed,
        writes=writer.posted,
        writes_per_second=round(writer.rate, 1),
        failed_writes=failed,
        answers=dict(writer.answers),
        committed=int(committed or 0),
        events_delivered=delivered,
        lost=lost,
        rotations=rotations,
    )
    said = [line for line in process.log_tail(400).splitlines() if '"info"' not in line]
    summary = f"failed {failed}, lost {lost}, rotations {rotations}"
    assert passed, "\n".join([summary, *writer.refusals, *said[-20:]])


@pytest.mark.reliability  # the case as it asks it: in make test and make report
def test_rotating_credentials_under_load_3min(platform: Platform, rig: Rig) -> None:
    run(platform, rig, 180, "3min")
