"""The native platform servers really start, serve, and stop cleanly.

Kafka, Consul, Jaeger and Prometheus are built (or taken from the cache) by
infrastructure/native/platform_native and started once for the session on
127.0.0.1, from the config files Compose mounts. Each test talks to a server
the way a service would: a Kafka client, Consul's HTTP API, an OTLP/HTTP
export, a PromQL query, psql with a service's DSN (PostgreSQL, started by its
own test: it is Debian's package, not a build).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "infrastructure" / "native"
sys.path.insert(0, str(NATIVE))

from platform_native import (  # noqa: E402 - needs the sys.path entry above
    Consul,
    Jaeger,
    Kafka,
    Postgres,
    Prometheus,
    Server,
    ToolError,
    configs,
    deck_file_validate,
    promtool_check_config,
    running,
)
from platform_native import __main__ as native_cli  # noqa: E402
from platform_native.probes import http_json  # noqa: E402
from platform_native.processes import group_members, listening_sockets, pid_alive  # noqa: E402
from platform_native.servers import openbao  # noqa: E402
from platform_native.servers.alerting import Alerting  # noqa: E402
from platform_native.servers.kafka import cluster_id, tools_archive  # noqa: E402

from .kafka_clients import produce_and_consume  # noqa: E402
from .postgres_clients import psql  # noqa: E402

pytestmark = pytest.mark.infra

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}
T = TypeVar("T")


@dataclass
class Platform:
    kafka: Kafka
    consul: Consul
    jaeger: Jaeger
    prometheus: Prometheus

    def servers(self) -> list[Server]:
        return [self.consul, self.jaeger, self.kafka, self.prometheus]


def _pids(servers: list[Server]) -> list[int]:
    pids = [s.pid for s in servers]
    assert all(pid is not None for pid in pids), "every server should be running"
    return [pid for pid in pids if pid is not None]


def _assert_all_gone(pids: list[int]) -> None:
    alive = [pid for pid in pids if pid_alive(pid) or group_members(pid)]
    assert not alive, f"processes left behind: {alive}"


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """All four servers, started once; teardown proves nothing is left running."""
    root = tmp_path_factory.mktemp("native-platform")
    kafka, consul, jaeger = Kafka(root / "kafka"), Consul(root / "consul"), Jaeger(root / "jaeger")
    prometheus = Prometheus(root / "prometheus", peers=[consul, jaeger, kafka])
    started = Platform(kafka=kafka, consul=consul, jaeger=jaeger, prometheus=prometheus)
    with running(*started.servers()):
        pids = _pids(started.servers())
        yield started
    _assert_all_gone(pids)


def eventually(check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.25)


# ----------------------------------------------------------------------- Kafka


async def _kafka_round_trip(bootstrap: str, topic: str, payload: bytes) -> tuple[set[str], bytes]:
    """List topics with aiokafka's admin client, then produce and consume one record."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    return topics, await produce_and_consume(topic, payload, bootstrap_servers=bootstrap)


def test_kafka_topic_is_created_and_seen_by_a_python_client(platform: Platform) -> None:
    topic = f"orders-{secrets.token_hex(4)}"
    platform.kafka.create_topics([topic], partitions=3)

    assert topic in platform.kafka.list_topics()
    topics, value = asyncio.run(_kafka_round_trip(platform.kafka.bootstrap, topic, b"hello"))
    assert topic in topics
    assert value == b"hello"


def test_kafka_create_topics_is_idempotent(platform: Platform) -> None:
    topic = f"payments-{secrets.token_hex(4)}"
    platform.kafka.create_topics([topic])
    platform.kafka.create_topics([topic])  # an existing topic is not an error

    assert platform.kafka.list_topics().count(topic) == 1


def test_kafka_tools_load_their_classes_from_one_archive_and_survive_a_broken_one(
    platform: Platform, tmp_path: Path
) -> None:
    kafka = platform.kafka
    archive = tools_archive(kafka.jars)
    assert archive.exists(), "a broker's start makes the tools' archive for this JVM"
    assert f"-XX:SharedArchiveFile={archive}" in kafka.tool_command("any.Main")
    topic = f"archived-{secrets.token_hex(4)}"
    kafka.create_topics([topic])
    assert topic in kafka.list_topics()  # parsed from the tool's stdout, archive in use

    # An archive that does not fit (another JVM's, a torn file) costs speed, nothing else.
    jars = tmp_path / "jars"
    jars.mkdir()
    for jar in kafka.jars.glob("*.jar"):
        (jars / jar.name).symlink_to(jar)
    tools_archive(jars).write_bytes(b"not a class-data archive")
    other = Kafka(tmp_path / "other", jars=jars)  # never started: only its tools run
    other.workdir.mkdir(parents=True, exist_ok=True)
    other.tools_log4j_path.write_text(kafka.tools_log4j_path.read_text())
    args = ("--bootstrap-server", kafka.bootstrap, "--list")
    listed = other.tool("org.apache.kafka.tools.TopicCommand", *args)
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout.split(), listed.stdout


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    """An id starting with "-" made the storage tool fail ("expected one argument")."""
    ids = [cluster_id() for _ in range(5000)]

    assert all(len(cluster_id) == 22 and not cluster_id.startswith("-") for cluster_id in ids)
    assert len(set(ids)) == len(ids)


def test_kafka_survives_kill_and_restarts_on_the_same_port_with_its_data(
    tmp_path: Path,
) -> None:
    kafka = Kafka(tmp_path / "kafka")
    with running(kafka):
        topic = "survivor"
        kafka.create_topics([topic], partitions=1)
        asyncio.run(_kafka_round_trip(kafka.bootstrap, topic, b"before-crash"))
        bootstrap, old_pid = kafka.bootstrap, kafka.pid
        assert old_pid is not None

        kafka.kill()
        assert not pid_alive(old_pid)
        kafka.restart()

        assert kafka.bootstrap == bootstrap
        assert kafka.pid != old_pid
        assert topic in kafka.list_topics()
        _, first = asyncio.run(_kafka_round_trip(kafka.bootstrap, topic, b"after-crash"))
        assert first == b"before-crash"  # the record written before the kill is still there
        pid = kafka.pid
    assert pid is not None
    _assert_all_gone([old_pid, pid])


# ---------------------------------------------------------------------- Consul


def test_consul_has_a_leader(platform: Platform) -> None:
    status, leader = http_json("GET", f"{platform.consul.http_url}/v1/status/leader")

    assert status == 200
    assert leader.startswith("127.0.0.1:")


def test_consul_registers_and_deregisters_a_service(platform: Platform) -> None:
    consul = platform.consul.http_url
    service_id = f"orders-{secrets.token_hex(4)}"
    registration = {
        "ID": service_id,
        "Name": "orders",
        "Address": "127.0.0.1",
        "Port": 8080,
        "Tags": ["prometheus"],
    }

    status, _ = http_json("PUT", f"{consul}/v1/agent/service/register", registration)
    assert status == 200
    _, services = http_json("GET", f"{consul}/v1/agent/services")
    assert services[service_id]["Port"] == 8080
    _, catalog = http_json("GET", f"{consul}/v1/catalog/service/orders")
    assert service_id in {entry["ServiceID"] for entry in catalog}

    status, _ = http_json("PUT", f"{consul}/v1/agent/service/deregister/{service_id}")
    assert status == 200
    _, services = http_json("GET", f"{consul}/v1/agent/services")
    assert service_id not in services


# ---------------------------------------------------------------------- Jaeger


def test_jaeger_accepts_an_otlp_http_trace_and_returns_it(platform: Platform) -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    now = time.time_ns()
    export = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "native-test"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "tests"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "place-order",
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                            }
                        ],
                    }
                ],
            }
        ]
    }

    status, _ = http_json("POST", f"{platform.jaeger.otlp_http}/v1/traces", export)
    assert status == 200

    def fetch() -> dict[str, Any] | None:
        code, body = http_json("GET", f"{platform.jaeger.query_url}/api/traces/{trace_id}")
        return body if code == 200 and body.get("data") else None

    trace = eventually(fetch)["data"][0]
    assert trace["traceID"] == trace_id
    assert [span["operationName"] for span in trace["spans"]] == ["place-order"]
    assert {p["serviceName"] for p in trace["processes"].values()} == {"native-test"}


# ------------------------------------------------------------------ Prometheus


def test_prometheus_scrapes_itself(platform: Platform) -> None:
    def up() -> list[Any] | None:
        samples = platform.prometheus.query('up{job="prometheus"}')
        return samples if samples and samples[0]["value"][1] == "1" else None

    samples = eventually(up)
    assert samples[0]["metric"]["instance"] == platform.prometheus.address


def test_promtool_accepts_a_valid_config_and_rejects_a_broken_one(
    platform: Platform, tmp_path: Path
) -> None:
    assert promtool_check_config(platform.prometheus.config_path).returncode == 0

    broken = tmp_path / "broken.yml"
    broken.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: soon\n")
    result = promtool_check_config(broken, check=False)
    assert result.returncode != 0
    with pytest.raises(ToolError):
        promtool_check_config(broken)


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_gives_each_service_a_database_only_it_reaches(tmp_path: Path) -> None:
    postgres = Postgres(tmp_path / "postgres")
    try:
        with running(postgres):
            orders = postgres.ensure_database("orders-api")
            billing = postgres.ensure_database("billing")
            assert postgres.ensure_database("orders-api") == orders  # idempotent

            whoami = psql(orders, "SELECT current_user || ' ' || current_database()")
            assert whoami.stdout.strip() == "orders_api orders_api", whoami.stderr
            outbox = "CREATE TABLE event_outbox (id serial, published_at timestamptz);"
            outbox += "INSERT INTO event_outbox (published_at) VALUES (NULL), (NULL), (now())"
            assert psql(orders, outbox).returncode == 0
            assert psql(billing, "SELECT 1").stdout.strip() == "1"

            # One service's role never reaches another's database, nor with a guess.
            crossed = psql(orders.rsplit("/", 1)[0] + "/billing", "SELECT 1")
            assert crossed.returncode != 0 and "no pg_hba.conf entry" in crossed.stderr
            password = urllib.parse.urlsplit(billing).password
            guessed = psql(billing.replace(f":{password}@", ":guess@"), "SELECT 1")
            assert "password authentication failed" in guessed.stderr
            may_connect = "SELECT has_database_privilege('orders_api', 'billing', 'CONNECT')"
            assert postgres.databases().run("postgres", may_connect).strip() == "f"

            secrets_dir = postgres.secrets_dir
            for secret in (postgres.password_file, *secrets_dir.glob("*.url")):
                assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
            assert postgres.databases().url_file("billing").read_text().strip() == billing
            report = dict(postgres.databases().report(["orders-api", "billing"]))
            assert report["orders-api"].endswith(", outbox backlog 2)"), report
            assert report["billing"].endswith(", no event_outbox table)"), report

            # TCP on loopback only, no unix socket, never as root.
            assert postgres.pid is not None
            members = group_members(postgres.pid)
            sockets = {(ip, port) for _, ip, port, _ in listening_sockets(members)}
            assert sockets == {("127.0.0.1", postgres.port)}
            unix = Path("/proc/net/unix").read_text()
            assert f".s.PGSQL.{postgres.port}" not in unix
            uid = int(Path(f"/proc/{postgres.pid}/status").read_text().split("Uid:")[1].split()[0])
            assert uid == os.geteuid() if os.geteuid() != 0 else uid != 0

            # A restart keeps the data, the port and every password.
            postgres.restart()
            assert psql(orders, "SELECT count(*) FROM event_outbox").stdout.strip() == "3"
            pid = postgres.pid
        assert pid is not None
        _assert_all_gone([pid])
    finally:
        postgres.remove_data()
    assert not any(tmp_path.joinpath("postgres").glob("server*"))


def test_postgres_leaves_no_data_outside_a_thrown_away_work_directory(tmp_path: Path) -> None:
    # pytest's 0700 folders keep the postgres account out when root runs the tests, so the
    # data goes to /var/tmp. The tests delete their work directories, never that folder:
    # CI left one of several hundred MB for each server it started.
    postgres = Postgres(tmp_path / "postgres")
    with running(postgres):
        data = postgres.server_dir.resolve()
        assert (data / "data" / "PG_VERSION").exists()
    assert not data.exists(), f"{data} outlived the server"
    assert not postgres.server_dir.is_symlink()


def _processes_naming(text: str) -> dict[int, str]:
    """Every process whose command line mentions ``text`` (a state directory): pid, line."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if text in line:
            found[int(cmdline.parent.name)] = line
    return found


def test_cli_up_that_fails_half_way_stops_every_server_and_drops_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI: OpenBao's initialisation timed out after the process had started. The daemon
    # was not yet listed as started, so it outlived the failed `up`, and PostgreSQL's
    # data (outside the state directory) outlived its stopped server.
    state_dir = tmp_path / "state"
    at_failure: dict[str, Any] = {}

    def init_fails(url: str, secrets_dir: Path, timeout: float = 60.0) -> str:
        at_failure["pids"] = _processes_naming(str(state_dir))
        at_failure["postgres_data"] = data = (state_dir / "postgres" / "server").resolve()
        assert (data / "data" / "PG_VERSION").exists()  # PostgreSQL had started
        raise openbao.OpenBaoError(f"openbao POST /v1/sys/init at {url}: injected by the test")

    monkeypatch.setattr(openbao, "initialise_and_unseal", init_fails)
    assert native_cli.main(["up", "--state-dir", str(state_dir)]) != 0
    running_then, data = at_failure["pids"], at_failure["postgres_data"]
    assert any(" server -config=" in line for line in running_then.values()), running_then
    _assert_all_gone(list(running_then))
    assert not _processes_naming(str(state_dir))
    assert not data.exists(), f"PostgreSQL's data {data} outlived a failed up"


# ------------------------------------------------------------------------ decK

KONG_VALID = """\
_format_version: "3.0"
services:
  - name: orders
    url: http://127.0.0.1:8080
    routes:
      - name: orders
        paths: [/orders]
"""

KONG_INVALID = """\
_format_version: "3.0"
services:
  - name: orders
    url: http://127.0.0.1:8080
    retries: many
"""


def test_deck_validates_a_kong_file_and_rejects_a_broken_one(tmp_path: Path) -> None:
    valid, invalid = tmp_path / "kong.yml", tmp_path / "broken.yml"
    valid.write_text(KONG_VALID)
    invalid.write_text(KONG_INVALID)

    assert deck_file_validate(valid).returncode == 0
    result = deck_file_validate(invalid, check=False)
    assert result.returncode != 0, result.stdout + result.stderr


# ------------------------------------------------------------------- listeners


def test_every_listener_is_on_loopback(platform: Platform) -> None:
    for server in platform.servers():
        assert server.pid is not None
        sockets = listening_sockets(group_members(server.pid))
        assert sockets, f"{server.name} has no listening sockets"
        exposed = {(proto, ip, port) for proto, ip, port, _ in sockets if ip not in LOOPBACK}
        assert not exposed, f"{server.name} listens beyond loopback: {exposed}"
        tcp_ports = {port for proto, _, port, _ in sockets if proto.startswith("tcp")}
        assert set(server.ports().values()) <= tcp_ports, server.name


def test_running_stops_every_process_it_started(tmp_path: Path) -> None:
    servers: list[Server] = [
        Consul(tmp_path / "consul"),
        Jaeger(tmp_path / "jaeger"),
        Prometheus(tmp_path / "prometheus"),
    ]
    with running(*servers):
        pids = _pids(servers)
        assert all(pid_alive(pid) for pid in pids)
    _assert_all_gone(pids)


# ------------------------------------------------------------- shipped configs


def _command_line(server: Server) -> list[str]:
    assert server.pid is not None
    return Path(f"/proc/{server.pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_consul_and_jaeger_run_the_shipped_file_plus_an_address_overlay(
    platform: Platform,
) -> None:
    """What Compose mounts is what runs; the overlay sets only loopback addresses and ports."""
    consul_args = _command_line(platform.consul)
    assert consul_args[1:] == [
        "agent",
        f"-config-file={configs.CONSUL_CONFIG}",
        f"-config-file={platform.consul.overlay_path}",
    ]
    jaeger_args = _command_line(platform.jaeger)
    assert jaeger_args[1:] == [
        f"--config=file:{configs.JAEGER_CONFIG}",
        f"--config=file:{platform.jaeger.overlay_path}",
    ]
    for server in (platform.consul, platform.jaeger):
        overlay = json.loads(server.overlay_path.read_text())
        assert configs.overlay_violations(overlay) == [], server.name
        text = json.dumps(overlay)
        assert "0.0.0.0" not in text and "127.0.0.1" in text, server.name
    # Consul really took consul.hcl's settings, not only the overlay's.
    status, self_info = http_json("GET", f"{platform.consul.http_url}/v1/agent/self")
    assert status == 200
    assert self_info["Config"]["Datacenter"] == "dc1"
    assert self_info["Config"]["Server"] is True
    assert self_info["DebugConfig"]["DNSOnlyPassing"] is True  # dns_config in consul.hcl


def test_prometheus_runs_the_shipped_file_with_only_addresses_replaced(
    platform: Platform,
) -> None:
    prometheus = platform.prometheus
    assert f"--config.file={prometheus.config_path}" in _command_line(prometheus)
    shipped = configs.PROMETHEUS_CONFIG.read_text()
    running_config = prometheus.config_path.read_text()

    assert running_config == configs.replace_addresses(shipped, prometheus.replacements())
    assert configs.compose_addresses(running_config) == []
    _, answer = http_json("GET", f"{prometheus.url}/api/v1/status/config")
    jobs = {
        line.split(":", 1)[1].strip()
        for line in answer["data"]["yaml"].splitlines()
        if line.strip().startswith("- job_name:")
    }
    assert jobs == {
        "services",
        "services-not-passing",
        "kong",
        "consul",
        "jaeger",
        "kafka-exporter",
        "alertmanager",
        "prometheus",
    }

    def consul_and_jaeger_scraped() -> bool:
        samples = prometheus.query('up{job=~"consul|jaeger"} == 1')
        return {s["metric"]["job"] for s in samples} == {"consul", "jaeger"}

    eventually(consul_and_jaeger_scraped, timeout=60)


# ------------------------------------------------------------------------- CLI


def test_cli_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(NATIVE)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "platform_native",
                *args,
                "--state-dir",
                str(state_dir),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    up = cli("up", "--topics", "alpha,beta")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((state_dir / "state.json").read_text())
        pids = [int(s["pgid"]) for s in state["servers"].values()]
        servers = (
            "consul", "jaeger", "victorialogs", "otelcol", "kafka", "postgres", "openbao",
            "prometheus",
        )  # fmt: skip
        names = {*servers, *Alerting.NAMES}
        assert set(state["servers"]) == names
        assert "topics: alpha, beta" in up.stdout
        # A line per step with its time, then every address.
        for name in names:
            assert f"==> starting {name} " in up.stdout
            assert re.search(rf"^    {name} ready in [0-9.]+s \(pid \d+", up.stdout, re.M)
        consul_ui = state["servers"]["consul"]["addresses"]["ui"]
        logs_ui = state["servers"]["victorialogs"]["addresses"]["ui"]
        otlp = state["servers"]["otelcol"]["addresses"]["otlp_http"]
        for line in (
            f"Consul UI    {consul_ui}",
            "Jaeger UI    http://127.0.0.1:",
            f"OTLP (HTTP)  {otlp}",
            f"Logs UI      {logs_ui}",
            f"PostgreSQL   {state['servers']['postgres']['addresses']['url']}",
        ):
            assert line in up.stdout
        # Services get the collector, never Jaeger, as their OTLP endpoint.
        assert state["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == otlp

        # The daemons outlived the `up` process.
        dead = [n for n, s in state["servers"].items() if not pid_alive(int(s["pgid"]))]
        assert not dead, {n: Path(state["servers"][n]["log"]).read_text()[-3000:] for n in dead}
        assert cli("status").returncode == 0
        again = cli("up")
        assert again.returncode == 0 and "already running" in again.stdout

        # prometheus.yml's consul:8500 now points at the native Consul, which is up.
        prometheus_url = state["servers"]["prometheus"]["addresses"]["url"]

        def consul_scraped() -> bool:
            query = urllib.parse.urlencode({"query": 'up{job="consul"}'})
            _, body = http_json("GET", f"{prometheus_url}/api/v1/query?{query}")
            result = body["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"

        eventually(consul_scraped)
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    _assert_all_gone(pids)
    assert not (state_dir / "state.json").exists()
    assert not (state_dir / "postgres" / "server").exists()  # nor its data, wherever it was
    assert cli("status").returncode == 1
