"""Static checks of the shared platform's configuration.

No container is started. The compose file is checked against the Compose
Specification's JSON schema and the platform's rules (pinned images,
healthchecks, loopback-only ports, non-root users, no secrets). Each mounted
configuration file is checked by its own tool (promtool, consul validate,
deck, jaeger validate, otelcol validate), and a check whose tool lacks the
subcommand fails; those tools are built from source by
infrastructure/native/platform_native/servers, so the tests that need them
are marked `infra`. Consul's config is also
validated and run in network namespaces shaped like a host with Docker
bridges and like its Compose container.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from platform_native import versions

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.infrastructure.yml"
COMPOSE_SCHEMA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "schemas" / "compose-spec.json"
)
INFRA = REPO / "infrastructure"
CONSUL_DIR = INFRA / "consul"
JAEGER_CONFIG = INFRA / "jaeger" / "config.yaml"
OTELCOL_CONFIG = INFRA / "otel-collector" / "config.yaml"
KONG_BASE = INFRA / "kong" / "kong.yml"
PROMETHEUS_CONFIG = INFRA / "prometheus" / "prometheus.yml"
GRAFANA = INFRA / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = GRAFANA / "dashboards"
ENV_EXAMPLE = REPO / ".env.example"
SECURE_COMPOSE_FILE = REPO / "docker-compose.secure.yml"
CONSUL_ACL = CONSUL_DIR / "secure" / "acl.hcl"
ALERTMANAGER_CONFIG = INFRA / "alertmanager" / "alertmanager.yml"
PROMETHEUS_RULES = INFRA / "prometheus" / "rules"

# The committed configuration of the platform (the generated Kong file and the
# native build module are not configuration).
CONFIG_FILES = [
    COMPOSE_FILE,
    SECURE_COMPOSE_FILE,
    CONSUL_DIR / "consul.hcl",
    CONSUL_ACL,
    JAEGER_CONFIG,
    OTELCOL_CONFIG,
    INFRA / "loki" / "config.yaml",
    KONG_BASE,
    PROMETHEUS_CONFIG,
    *sorted(PROMETHEUS_RULES.glob("*.yml")),
    ALERTMANAGER_CONFIG,
    DATASOURCES,
    DASHBOARD_PROVIDERS,
    *sorted(DASHBOARDS.glob("*.json")),
]

EXPECTED_SERVICES = {
    "kafka",
    "consul",
    "jaeger",
    "kong",
    "prometheus",
    "grafana",
    "kafka-ui",
    "kafka-exporter",
    "otel-collector",
    "loki",
    "alertmanager",
    "alert-log",
    "postgres",
    "openbao",
}
STATE_VOLUMES = {
    "kafka-data",
    "consul-data",
    "prometheus-data",
    "grafana-data",
    "loki-data",
    "alertmanager-data",
    "alert-log-data",
    "postgres-data",
}
# Images whose releases are major.minor: PostgreSQL's since version 10 (15.18).
TWO_PART_VERSIONS = {"postgres"}
# FROM-scratch images: no shell or HTTP client inside to probe with, so Docker
# cannot check them and nothing may wait for them to be healthy.
NO_HEALTHCHECK = {"otel-collector"}
TOOL_TIMEOUT = 120  # seconds for one run of an already built tool


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def with_defaults(value: str) -> str:
    """Interpolate ${VAR:-default} with its default, as compose would without a .env."""
    return _VAR.sub(lambda m: m.group("arg") if m.group("op") in (":-", "-") else "", value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


_SHORT_PORT = re.compile(
    r"^(?:(?P<ip>\[[^\]]+\]|\d{1,3}(?:\.\d{1,3}){3}):)?"
    r"(?:(?P<published>\$\{[^}]+\}|[0-9]+(?:-[0-9]+)?):)?"
    r"(?P<target>[0-9]+(?:-[0-9]+)?)(?:/(?P<protocol>tcp|udp|sctp))?$"
)


def published_ports(service: dict[str, Any]) -> Iterator[tuple[str | None, str | None, str]]:
    """(host_ip, published, target) of each entry in `ports`, short or long syntax."""
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            yield (
                entry.get("host_ip"),
                None if published is None else str(published),
                str(entry["target"]),
            )
            continue
        match = _SHORT_PORT.match(str(entry))
        assert match, f"cannot parse port {entry!r}"
        yield match.group("ip"), match.group("published"), match.group("target")


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(host path, container path) of each bind mount."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type") == "bind":
                yield entry["source"], entry["target"]
            continue
        source, _, rest = str(entry).partition(":")
        if source.startswith((".", "/", "~")):
            yield source, rest.split(":")[0]


def named_volumes(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume" and entry.get("source"):
                yield entry["source"], entry["target"]
            continue
        source, _, rest = str(entry).partition(":")
        if rest and not source.startswith((".", "/", "~")):
            yield source, rest.split(":")[0]


def memory_limit(service: dict[str, Any]) -> Any:
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    return limits.get("memory") or service.get("mem_limit")


def run(args: Sequence[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


# --------------------------------------------------------------------------- compose file


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    assert COMPOSE_SCHEMA.is_file(), f"Compose JSON schema missing at {COMPOSE_SCHEMA}"
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_platform_services_are_all_there(services: dict[str, Any]) -> None:
    assert set(services) == EXPECTED_SERVICES


_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)


def test_every_image_is_pinned_to_an_exact_version(services: dict[str, Any]) -> None:
    problems = []
    for name, service in services.items():
        image = service.get("image")
        match = _IMAGE.match(image or "")
        if not match:
            problems.append(f"{name}: image {image!r} missing or not a plain reference")
        elif not match.group("tag"):
            problems.append(f"{name}: image {image!r} has no tag")
        elif match.group("tag") == "latest" or not re.search(
            r"^\d+\.\d+(-|$)" if match.group("name") in TWO_PART_VERSIONS else r"\d+\.\d+\.\d+",
            match.group("tag"),
        ):
            problems.append(f"{name}: tag of {image!r} is not an exact version")
    assert not problems, "\n".join(problems)


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    problems = []
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if name in NO_HEALTHCHECK:
            if check != {"disable": True}:
                problems.append(f"{name}: cannot be probed; say so with `disable: true`")
            continue
        if check.get("disable") or not test or test in (["NONE"], "NONE"):
            problems.append(f"{name}: no healthcheck test")
        elif isinstance(test, list) and test[0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: healthcheck test must start with CMD or CMD-SHELL")
        for key in ("interval", "timeout", "retries"):
            if key not in check:
                problems.append(f"{name}: healthcheck has no {key}")
    assert not problems, "\n".join(problems)


def test_dependencies_wait_until_healthy(services: dict[str, Any]) -> None:
    problems = []
    for name, service in services.items():
        depends_on = service.get("depends_on")
        if depends_on is None:
            continue
        if not isinstance(depends_on, dict):
            problems.append(f"{name}: depends_on must be a mapping with conditions")
            continue
        for dependency, options in depends_on.items():
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency}")
            elif dependency in NO_HEALTHCHECK:
                problems.append(f"{name}: waits for {dependency}, which is never healthy")
            elif (options or {}).get("condition") != "service_healthy":
                problems.append(
                    f"{name}: depends_on {dependency} without condition service_healthy"
                )
    assert not problems, "\n".join(problems)
    # The ones that need another really do wait for it.
    assert {"kafka"} <= set(services["kafka-ui"]["depends_on"])
    assert {"kafka"} <= set(services["kafka-exporter"]["depends_on"])
    assert {"consul"} <= set(services["kong"]["depends_on"])
    assert {"prometheus"} <= set(services["grafana"]["depends_on"])


def test_every_published_port_is_bound_to_loopback(services: dict[str, Any]) -> None:
    problems = []
    for name, service in services.items():
        for host_ip, published, target in published_ports(service):
            if host_ip != "127.0.0.1":
                problems.append(f"{name}: port {target} published on {host_ip or 'all interfaces'}")
            if published is None:
                problems.append(f"{name}: port {target} published on a random host port")
    assert not problems, "\n".join(problems)
    # The unauthenticated admin APIs, exactly as documented.
    assert "127.0.0.1:8001:8001" in services["kong"]["ports"]
    assert "127.0.0.1:8500:8500" in services["consul"]["ports"]


def test_bind_mounted_host_paths_exist(services: dict[str, Any]) -> None:
    mounts = [(name, src, dst) for name, s in services.items() for src, dst in bind_mounts(s)]
    assert mounts, "expected configuration bind mounts"
    missing = [f"{name}: {src}" for name, src, _ in mounts if not (REPO / src).resolve().exists()]
    assert not missing, "bind-mounted paths missing from the repository:\n" + "\n".join(missing)
    outside = [
        f"{name}: {src}"
        for name, src, _ in mounts
        if not (REPO / src).resolve().is_relative_to(REPO)
    ]
    assert not outside, "bind mounts outside the repository:\n" + "\n".join(outside)
    readonly = [
        f"{name}: {src}"
        for name, s in services.items()
        for src, _ in bind_mounts(s)
        if not any(
            isinstance(v, str) and v.startswith(src + ":") and v.endswith(":ro")
            for v in s.get("volumes", [])
        )
    ]
    assert not readonly, "configuration must be mounted read-only:\n" + "\n".join(readonly)


def test_state_lives_in_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {src for s in services.values() for src, _ in named_volumes(s)}
    assert declared >= STATE_VOLUMES, f"missing volume declarations: {STATE_VOLUMES - declared}"
    assert used >= STATE_VOLUMES, f"declared but unused: {STATE_VOLUMES - used}"
    assert used <= declared, f"undeclared volumes: {used - declared}"


def test_runtime_hygiene(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert set(compose["networks"]) == {"platform"}
    assert compose["networks"]["platform"].get("name", "platform") == "platform"
    problems = []
    for name, service in services.items():
        if service.get("restart") != "unless-stopped":
            problems.append(f"{name}: restart is not unless-stopped")
        if not memory_limit(service):
            problems.append(f"{name}: no memory limit")
        logging = service.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or not {"max-size", "max-file"} <= set(options):
            problems.append(f"{name}: logging without json-file rotation")
        networks = service.get("networks") or []
        if "platform" not in networks:
            problems.append(f"{name}: not on the platform network")
        if service.get("privileged") or service.get("network_mode") == "host":
            problems.append(f"{name}: privileged or host networking")
    assert not problems, "\n".join(problems)
    # One logging definition, shared through a YAML anchor.
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert re.search(r"^x-logging: &\S+", text, re.MULTILINE)


def test_containers_run_as_non_root(services: dict[str, Any]) -> None:
    problems = []
    for name, service in services.items():
        user = str(service.get("user", "")).strip()
        if not user:
            problems.append(f"{name}: no user declared")
        elif user.split(":")[0] in ("root", "0"):
            problems.append(f"{name}: runs as root ({user})")
    assert not problems, "\n".join(problems)


def test_kafka_is_kraft_without_auto_created_topics(services: dict[str, Any]) -> None:
    env = environment(services["kafka"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    advertised = with_defaults(env["KAFKA_ADVERTISED_LISTENERS"])
    assert "PLAINTEXT://kafka:9092" in advertised
    external_port = with_defaults("${KAFKA_EXTERNAL_PORT:-9094}")
    assert f"EXTERNAL://localhost:{external_port}" in advertised
    ports = {(with_defaults(p or ""), t) for _, p, t in published_ports(services["kafka"])}
    assert (external_port, "9094") in ports
    exporter = " ".join(services["kafka-exporter"]["command"])
    assert "--kafka.server=kafka:9092" in exporter


def test_kong_is_db_less_and_resolves_through_consul(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    env = {key: with_defaults(value) for key, value in environment(services["kong"]).items()}
    assert env["KONG_DATABASE"] == "off"
    assert env["KONG_DECLARATIVE_CONFIG"] == "/kong/kong.generated.yml"
    mounts = {dst: src for src, dst in bind_mounts(services["kong"])}
    assert (REPO / mounts["/kong"]).resolve() == KONG_BASE.parent
    # Kong accepts only IP addresses as resolvers: Consul's fixed address.
    consul_ip = with_defaults(services["consul"]["networks"]["platform"]["ipv4_address"])
    (subnet,) = [
        with_defaults(c["subnet"]) for c in compose["networks"]["platform"]["ipam"]["config"]
    ]
    assert ipaddress.ip_address(consul_ip) in ipaddress.ip_network(subnet)
    assert env["KONG_DNS_RESOLVER"] == f"{consul_ip}:8600"
    assert env["KONG_DNS_ORDER"] == "LAST,SRV,A,CNAME"
    assert env["KONG_TRACING_INSTRUMENTATIONS"] == "all"
    assert float(env["KONG_TRACING_SAMPLING_RATE"]) == 1.0
    assert env["KONG_ADMIN_LISTEN"].endswith(":8001")
    assert env["KONG_STATUS_LISTEN"].endswith(":8100")


def test_grafana_password_comes_from_the_environment(services: dict[str, Any]) -> None:
    env = environment(services["grafana"])
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:?set in .env}"


def test_postgres_is_the_native_major_with_passwords_only(services: dict[str, Any]) -> None:
    """Same major as the native server, SCRAM over TCP, peer for the superuser inside."""
    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].split(".")[0] == versions.POSTGRES_MAJOR
    env = environment(postgres)
    assert env["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?set in .env}"
    initdb = env["POSTGRES_INITDB_ARGS"].split()
    assert {"--auth-host=scram-sha-256", "--auth-local=peer"} <= set(initdb)
    assert "trust" not in env["POSTGRES_INITDB_ARGS"] and "POSTGRES_HOST_AUTH_METHOD" not in env
    test = postgres["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"] and "--host=127.0.0.1" in test
    assert {dst for _, dst in named_volumes(postgres)} == {"/var/lib/postgresql/data"}


# --------------------------------------------------------------------------- secrets

_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential)"
)
# A required reference without a default: ${VAR}, ${VAR:?message}, ${VAR?message}.
_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")
_SECRET_TEXT = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9+/=._-]{12,}"),
]
PLACEHOLDERS = {"", "change-me", "changeme"}


def _secret_values(node: Any, path: str = "") -> Iterator[str]:
    """Paths of secret-looking keys whose value is a literal, not a ${...} reference."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}/{key}"
            if (
                _SECRET_KEY.search(str(key))
                and isinstance(value, str)
                and value
                and not _REFERENCE.match(value.strip())
            ):
                yield where
            yield from _secret_values(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str) and "=" in value:
                key, _, literal = value.partition("=")
                if _SECRET_KEY.search(key) and literal and not _REFERENCE.match(literal.strip()):
                    yield f"{path}[{index}]"
            yield from _secret_values(value, f"{path}[{index}]")


def test_no_secret_in_committed_configuration() -> None:
    problems = []
    for path in CONFIG_FILES:
        text = path.read_text(encoding="utf-8")
        problems += [
            f"{path.relative_to(REPO)}: {p.pattern}" for p in _SECRET_TEXT if p.search(text)
        ]
        if path.suffix in (".yml", ".yaml"):
            problems += [
                f"{path.relative_to(REPO)}: {w}" for w in _secret_values(yaml.safe_load(text))
            ]
        elif path.suffix == ".json":
            problems += [f"{path.relative_to(REPO)}: {w}" for w in _secret_values(json.loads(text))]
        elif path.suffix == ".hcl":
            for number, line in enumerate(text.splitlines(), 1):
                code = line.split("#", 1)[0].split("//", 1)[0]
                if re.search(
                    r"(?i)\b(\w*token\w*|encrypt|password|secret)\s*=\s*(?!(true|false)\b)\S", code
                ) or re.search(r"^\s*tokens\s*\{", code):
                    problems.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not problems, "secrets in committed files:\n" + "\n".join(problems)


def test_env_example_holds_only_placeholders() -> None:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    assert values.get("GRAFANA_ADMIN_PASSWORD") == "change-me"
    secrets = {k: v for k, v in values.items() if _SECRET_KEY.search(k) and v not in PLACEHOLDERS}
    assert not secrets, f"real-looking secrets in .env.example: {sorted(secrets)}"
    # Every variable the compose file reads is documented there.
    compose_text = COMPOSE_FILE.read_text() + SECURE_COMPOSE_FILE.read_text()
    used = {m.group("name") for m in _VAR.finditer(compose_text)}
    assert used <= set(values), f"undocumented in .env.example: {sorted(used - set(values))}"


# --------------------------------------------------------------------------- secured options


def merged_with_secure(compose: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.infrastructure.yml with docker-compose.secure.yml over it, as
    Compose merges them: mappings joined, ports and volumes appended, command replaced."""
    merged: dict[str, Any] = json.loads(json.dumps(compose))
    for name, override in load_yaml(SECURE_COMPOSE_FILE)["services"].items():
        service = merged["services"][name]
        service.setdefault("environment", {}).update(override.get("environment", {}))
        for key in ("ports", "volumes"):
            service[key] = service.get(key, []) + override.get(key, [])
        if "command" in override:
            service["command"] = override["command"]
    return merged


def kafka_properties(env: dict[str, str]) -> dict[str, str]:
    """The apache/kafka image's mapping: KAFKA_A_B__C___D -> a.b_c-d."""
    return {
        key[len("KAFKA_") :]
        .replace("___", "-")
        .replace("__", "\0")
        .replace("_", ".")
        .replace("\0", "_")
        .lower(): value
        for key, value in env.items()
        if key.startswith("KAFKA_")
    }


def test_secure_override_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    for document in (load_yaml(SECURE_COMPOSE_FILE), merged_with_secure(compose)):
        errors = [e.message for e in validator.iter_errors(document)]
        assert not errors, errors


def test_secure_kafka_listener_is_the_native_one(compose: dict[str, Any], tmp_path: Path) -> None:
    """The image gets the same SASL_SSL settings as Kafka(secured=True) writes natively."""
    from platform_native import tls
    from platform_native.servers import Kafka

    kafka = merged_with_secure(compose)["services"]["kafka"]
    properties = kafka_properties(
        {key: with_defaults(value) for key, value in environment(kafka).items()}
    )
    native = Kafka(tmp_path, jars=tmp_path, secured=True)  # never started
    native.certificate = tls.ServerCertificate(tmp_path / "ca.pem", tmp_path / "k.p12", "pw")
    expected = native.secured_properties()
    assert set(expected) <= set(properties)
    for key in ("sasl.enabled.mechanisms", "listener.name.sasl_ssl.ssl.keystore.type"):
        assert properties[key] == expected[key]
    jaas = "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"
    assert properties[jaas] == expected[jaas]
    assert "SASL_SSL://:9095" in properties["listeners"]
    assert "SASL_SSL://localhost:9095" in properties["advertised.listeners"]
    assert "SASL_SSL:SASL_SSL" in properties["listener.security.protocol.map"]
    # Passwords only from the environment; the keystore from the ignored .secrets/.
    secure_env = load_yaml(SECURE_COMPOSE_FILE)["services"]["kafka"]["environment"]
    for key, value in secure_env.items():
        if "PASSWORD" in key:
            assert _REFERENCE.match(value), key
    assert "./.secrets/kafka:/etc/kafka/secrets:ro" in kafka["volumes"]
    assert ".secrets/" in (REPO / ".gitignore").read_text().splitlines()
    ports = {(host, with_defaults(p or ""), target) for host, p, target in published_ports(kafka)}
    assert ("127.0.0.1", "9095", "9095") in ports


def test_secure_consul_loads_the_shipped_acl_file(compose: dict[str, Any]) -> None:
    consul = merged_with_secure(compose)["services"]["consul"]
    mounts = {dst: src for src, dst in bind_mounts(consul)}
    flag = next(arg for arg in consul["command"] if arg.startswith("-config-file="))
    in_container = Path(flag.split("=", 1)[1])
    on_host = (REPO / mounts["/consul/config"]).resolve() / in_container.relative_to(
        "/consul/config"
    )
    assert on_host == CONSUL_ACL
    code = "\n".join(line.split("#", 1)[0] for line in CONSUL_ACL.read_text().splitlines())
    assert re.search(r"acl\s*\{[^}]*enabled\s*=\s*true", code, re.DOTALL)
    assert re.search(r'default_policy\s*=\s*"deny"', code)


# --------------------------------------------------------------------------- config shapes


def test_prometheus_config_shape(services: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"services", "kong", "consul", "jaeger", "kafka-exporter", "prometheus"} <= set(jobs)

    sd = jobs["services"]["consul_sd_configs"]
    assert [c["server"] for c in sd] == ["consul:8500"]
    assert all("prometheus" in c.get("tags", []) for c in sd)
    relabel = {
        (tuple(r.get("source_labels", [])), r.get("target_label"))
        for r in jobs["services"]["relabel_configs"]
    }
    assert (("__meta_consul_service",), "service") in relabel
    assert (("__meta_consul_service_id",), "instance") in relabel
    assert (("__meta_consul_service_metadata_metrics_path",), "__metrics_path__") in relabel

    def targets(job: str) -> list[str]:
        return [t for sc in jobs[job]["static_configs"] for t in sc["targets"]]

    assert targets("kong") == ["kong:8100"]
    assert targets("consul") == ["consul:8500"]
    assert jobs["consul"]["metrics_path"] == "/v1/agent/metrics"
    assert jobs["consul"]["params"] == {"format": ["prometheus"]}
    assert targets("jaeger") == ["jaeger:8888"]
    assert targets("kafka-exporter") == ["kafka-exporter:9308"]
    # Static targets are services of the compose file.
    for job in ("kong", "consul", "jaeger", "kafka-exporter"):
        for target in targets(job):
            assert target.split(":")[0] in services


def test_consul_config_shape() -> None:
    text = (CONSUL_DIR / "consul.hcl").read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert re.search(r"^\s*disable_update_check\s*=\s*true", code, re.MULTILINE)
    assert re.search(r"dns_config\s*\{[^}]*only_passing\s*=\s*true", code, re.DOTALL)
    assert re.search(r"^\s*datacenter\s*=", code, re.MULTILINE)
    assert re.search(r"^\s*data_dir\s*=", code, re.MULTILINE)
    assert re.search(r"ui_config\s*\{[^}]*enabled\s*=\s*true", code, re.DOTALL)
    assert re.search(r"prometheus_retention_time\s*=", code)
    assert "CONSUL_HTTP_TOKEN" in text  # the commented ACL guidance


def test_jaeger_config_shape() -> None:
    config = load_yaml(JAEGER_CONFIG)
    service = config["service"]
    # Everything the service section names is defined.
    for extension in service["extensions"]:
        assert extension in config["extensions"], extension
    for pipeline in service["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{kind}: {component}"
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert "batch" in service["pipelines"]["traces"]["processors"]
    backends = config["extensions"]["jaeger_storage"]["backends"]
    storage = config["extensions"]["jaeger_query"]["storage"]["traces"]
    assert backends[storage]["memory"]["max_traces"] == 100000
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] == storage
    assert config["extensions"]["jaeger_query"]["http"]["endpoint"].endswith(":16686")
    assert config["extensions"]["healthcheckv2"]["http"]["endpoint"].endswith(":13133")
    prom = service["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert prom["port"] == 8888


def test_kong_base_config_shape() -> None:
    config = load_yaml(KONG_BASE)
    assert config["_format_version"] == "3.0"
    assert not config.get("services"), "the base holds global plugins only"
    plugins = {p["name"]: p for p in config["plugins"]}
    assert set(plugins) == {
        "cors",
        "prometheus",
        "correlation-id",
        "opentelemetry",
        "rate-limiting",
    }
    for plugin in plugins.values():
        assert not {"service", "route", "consumer"} & set(plugin), f"{plugin['name']} is not global"
        assert plugin.get("enabled", True)
    prometheus = plugins["prometheus"]["config"]
    assert prometheus["per_consumer"] is False
    for flag in (
        "status_code_metrics",
        "latency_metrics",
        "upstream_health_metrics",
        "bandwidth_metrics",
    ):
        assert prometheus[flag] is True, flag
    correlation = plugins["correlation-id"]["config"]
    assert correlation == {
        "header_name": "X-Request-ID",
        "generator": "uuid#counter",
        "echo_downstream": True,
    }
    otel = plugins["opentelemetry"]["config"]
    assert otel["traces_endpoint"] == "http://jaeger:4318/v1/traces"
    assert otel["propagation"]["default_format"] == "w3c"
    assert otel["resource_attributes"] == {"service.name": "kong"}
    limit = plugins["rate-limiting"]["config"]
    assert limit["policy"] == "local" and limit["minute"] == 600


def test_grafana_provisioning(services: dict[str, Any]) -> None:
    datasources = {d["uid"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    assert datasources["prometheus"]["type"] == "prometheus"
    assert datasources["prometheus"]["url"] == "http://prometheus:9090"
    assert datasources["prometheus"]["isDefault"] is True
    assert datasources["jaeger"]["type"] == "jaeger"
    assert datasources["jaeger"]["url"] == "http://jaeger:16686"
    assert sum(bool(d.get("isDefault")) for d in datasources.values()) == 1

    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert [p["type"] for p in providers] == ["file"]
    mounts = {dst: src for src, dst in bind_mounts(services["grafana"])}
    dashboards_path = providers[0]["options"]["path"]
    assert dashboards_path == "/var/lib/grafana/dashboards"
    assert (REPO / mounts[dashboards_path]).resolve() == DASHBOARDS
    assert (REPO / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def test_service_dashboard() -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files
    dashboards = {f.name: json.loads(f.read_text(encoding="utf-8")) for f in files}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids))

    dashboard = dashboards["service-overview.json"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    service = variables["service"]
    query = service["query"]["query"] if isinstance(service["query"], dict) else service["query"]
    assert query == 'label_values(up{job="services"}, service)'
    assert service["multi"] and service["includeAll"]
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert any(r.get("repeat") == "service" for r in rows), "one row per service"

    expressions = "\n".join(_expressions(dashboard))
    for metric in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "messaging_consumed_messages_total",
        "messaging_sent_messages_total",
        "messaging_batch_duration_seconds_bucket",
        "messaging_dead_lettered_messages_total",
        "messaging_retries_total",
        "messaging_consumer_lag",
        "kafka_consumergroup_lag",
    ):
        assert metric in expressions, metric
    assert 'status=~"5.."' in expressions
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}" in expressions
    assert "sum by (consumergroup, topic) (kafka_consumergroup_lag" in expressions
    # Every panel queries a provisioned data source.
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "prometheus", panel["title"]


# --------------------------------------------------------------------------- real tools


@pytest.fixture(scope="module")
def native_servers() -> Any:
    """platform_native.servers: each tool is built from source, cached outside the repo."""
    from platform_native import servers

    return servers


@pytest.fixture(scope="module")
def promtool(native_servers: Any) -> Path:
    return Path(native_servers.build_prometheus()) / "promtool"


@pytest.fixture(scope="module")
def amtool(native_servers: Any) -> Path:
    return Path(native_servers.build_alertmanager()) / "amtool"


@pytest.fixture(scope="module")
def consul(native_servers: Any) -> Path:
    return Path(native_servers.build_consul())


@pytest.fixture(scope="module")
def deck(native_servers: Any) -> Path:
    return Path(native_servers.build_deck())


@pytest.fixture(scope="module")
def jaeger(native_servers: Any) -> Path:
    return Path(native_servers.build_jaeger())


@pytest.fixture(scope="module")
def otelcol(native_servers: Any) -> Path:
    return Path(native_servers.build_otelcol())


def check(
    tool: Path, subcommand: Sequence[str], *args: str | Path, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``tool subcommand args``; fail, never skip, when the subcommand is missing.

    ``tool subcommand --help`` must answer with that subcommand's usage, so a
    build without it fails here with that reason instead of passing vacuously.
    """
    usage = run([*prefix, tool, *subcommand, "--help"])
    name = f"{tool.name} {' '.join(subcommand)}"
    assert usage.returncode == 0 and name in usage.stdout + usage.stderr, (
        f"{tool} has no `{' '.join(subcommand)}` subcommand (exit {usage.returncode}):\n"
        f"{usage.stdout}{usage.stderr}"
    )
    result = run([*prefix, tool, *subcommand, *args])
    assert_ok(result)
    return result


SERVICE_SNIPPET = """\
_format_version: "3.0"
services:
  - name: orders
    host: orders.service.consul
    port: 80
    protocol: http
    routes:
      - name: orders-api
        paths: [/api/v1/orders]
        strip_path: false
    plugins:
      - name: rate-limiting
        instance_name: orders-rate-limiting
        config:
          minute: 120
          policy: local
"""


@pytest.mark.infra
def test_promtool_accepts_the_prometheus_config(promtool: Path) -> None:
    check(promtool, ["check", "config"], PROMETHEUS_CONFIG)


@pytest.mark.infra
def test_promtool_unit_tests_of_the_alert_rules_pass(promtool: Path) -> None:
    """infrastructure/prometheus/alerting/tests.yml: each alert fires and stays quiet."""
    tests = INFRA / "prometheus" / "alerting" / "tests.yml"
    result = check(promtool, ["test", "rules"], tests)
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.infra
def test_amtool_accepts_the_alertmanager_config(amtool: Path) -> None:
    result = check(amtool, ["check-config"], ALERTMANAGER_CONFIG)
    assert "3 receivers" in result.stdout


@pytest.mark.infra
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["service=orders", "severity=critical", "alertname=ServiceDown"], "service-page"),
        (["service=orders", "severity=warning", "alertname=ServiceInstanceDown"], "service-chat"),
        (["service=orders", "alertname=Unlabelled"], "service-chat"),
        (["severity=warning", "alertname=LagExporterDown"], "platform-team"),
    ],
)
def test_alertmanager_routes_by_service_and_severity(
    amtool: Path, labels: list[str], receiver: str
) -> None:
    config = f"--config.file={ALERTMANAGER_CONFIG}"
    result = check(amtool, ["config", "routes", "test"], config, *labels)
    assert result.stdout.strip() == receiver


@pytest.mark.infra
def test_dashboard_queries_are_valid_promql(promtool: Path, tmp_path: Path) -> None:
    """promtool parses every panel query (Grafana's variables filled in)."""
    expressions = [
        expr.replace("$__rate_interval", "1m").replace("$service", "orders")
        for f in sorted(DASHBOARDS.glob("*.json"))
        for expr in _expressions(json.loads(f.read_text(encoding="utf-8")))
    ]
    assert expressions
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(expressions)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard-rules.yml"
    rules_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
    check(promtool, ["check", "rules"], rules_file)


@pytest.mark.infra
def test_consul_validates_its_config(consul: Path) -> None:
    check(consul, ["validate"], CONSUL_DIR)


@pytest.mark.infra
def test_consul_validates_its_config_with_acls(consul: Path) -> None:
    check(consul, ["validate"], CONSUL_DIR / "consul.hcl", CONSUL_ACL)


@pytest.mark.infra
def test_deck_validates_the_kong_base(deck: Path) -> None:
    check(deck, ["file", "validate"], "--analytics=false", KONG_BASE)


@pytest.mark.infra
def test_deck_merges_the_base_with_a_service_snippet(deck: Path, tmp_path: Path) -> None:
    snippet = tmp_path / "orders.yaml"
    snippet.write_text(SERVICE_SNIPPET, encoding="utf-8")
    merged = tmp_path / "kong.generated.yml"
    check(deck, ["file", "merge"], "--analytics=false", "-o", str(merged), KONG_BASE, snippet)
    check(deck, ["file", "validate"], "--analytics=false", merged)

    config = load_yaml(merged)
    assert config["_format_version"] == "3.0"
    assert {p["name"] for p in config["plugins"]} == {
        "cors",
        "prometheus",
        "correlation-id",
        "opentelemetry",
        "rate-limiting",
    }
    (orders,) = config["services"]
    assert orders["host"] == "orders.service.consul"
    assert [p["name"] for p in orders["plugins"]] == ["rate-limiting"]


@pytest.mark.infra
def test_jaeger_validates_its_config(jaeger: Path) -> None:
    check(jaeger, ["validate"], "--config", f"file:{JAEGER_CONFIG}")


@pytest.mark.infra
def test_otelcol_validates_its_config(otelcol: Path, tmp_path: Path) -> None:
    """The collector built from infrastructure/otel-collector/builder.yaml (the same
    components as Compose's contrib image) accepts the shipped config, and rejects a typo."""
    check(otelcol, ["validate"], "--config", f"file:{OTELCOL_CONFIG}")
    typo = tmp_path / "typo.yaml"
    typo.write_text(OTELCOL_CONFIG.read_text().replace("send_batch_size:", "send_batch_sise:"))
    rejected = run([otelcol, "validate", "--config", f"file:{typo}"])
    assert rejected.returncode != 0 and "send_batch_sise" in rejected.stderr


def test_a_tool_without_the_subcommand_fails_the_check(tmp_path: Path) -> None:
    """A checker that lacks the subcommand, or ignores it, is a failure and never a skip."""
    prints_root_help = tmp_path / "jaeger"
    prints_root_help.write_text("#!/bin/sh\necho 'Usage:\n  jaeger [flags]'\n")
    unknown_command = tmp_path / "consul"
    unknown_command.write_text('#!/bin/sh\necho "unknown command $1" >&2\nexit 127\n')
    for tool in (prints_root_help, unknown_command):
        tool.chmod(0o755)
        with pytest.raises(AssertionError, match="has no `validate` subcommand"):
            check(tool, ["validate"], "--config", f"file:{JAEGER_CONFIG}")

    rejects = tmp_path / "promtool"
    rejects.write_text("#!/bin/sh\necho 'usage: promtool check config'\n[ \"$3\" = --help ]\n")
    rejects.chmod(0o755)
    with pytest.raises(AssertionError, match="exited 1"):
        check(rejects, ["check", "config"], PROMETHEUS_CONFIG)


# ------------------------------------------------- Consul on a host with Docker bridges


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def network_namespace(interfaces: Sequence[tuple[str, str, str]], gateway: str) -> Iterator[str]:
    """A network namespace with ``(name, kind, cidr)`` interfaces and a default route.

    Kinds are ``veth`` (a NIC; its peer stays without an address) and
    ``bridge`` (what Docker creates for each network). Deleted on the way out,
    also when the test fails.
    """
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root (CI runs as root)")
    name = f"platform-test-{os.getpid()}-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        for device, kind, cidr in interfaces:
            if kind == "veth":
                ip("-n", name, "link", "add", device, "type", "veth", "peer", "name", f"{device}p")
                ip("-n", name, "link", "set", f"{device}p", "up")
            else:
                ip("-n", name, "link", "add", device, "type", kind)
            ip("-n", name, "addr", "add", cidr, "dev", device)
            ip("-n", name, "link", "set", device, "up")
        ip("-n", name, "route", "add", "default", "via", gateway)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


# A developer's machine with Docker: its own NIC, the default bridge, a user network.
HOST_WITH_DOCKER = [
    ("eth0", "veth", "10.1.0.2/24"),
    ("docker0", "bridge", "172.17.0.1/16"),
    ("br-platform", "bridge", "172.30.0.1/24"),
]


@pytest.mark.infra
def test_consul_config_validates_on_a_host_with_docker_bridges(
    consul: Path, tmp_path: Path
) -> None:
    without_bind = tmp_path / "consul"
    without_bind.mkdir()
    text = (CONSUL_DIR / "consul.hcl").read_text(encoding="utf-8")
    (without_bind / "consul.hcl").write_text(re.sub(r"(?m)^bind_addr.*$", "", text))

    with network_namespace(HOST_WITH_DOCKER, gateway="10.1.0.1") as namespace:
        in_namespace = ["ip", "netns", "exec", namespace]
        # The namespace really is such a host: without bind_addr Consul refuses it.
        unbound = run([*in_namespace, consul, "validate", without_bind])
        assert unbound.returncode != 0
        assert "Multiple private IPv4 addresses found" in unbound.stdout + unbound.stderr

        check(consul, ["validate"], CONSUL_DIR, prefix=in_namespace)


@pytest.mark.infra
def test_consul_config_serves_as_in_its_compose_container(consul: Path, tmp_path: Path) -> None:
    """The image's command line on a network like Compose's: it binds to its address, leads.

    The namespace has no route out, so nothing it does leaves this machine.
    """
    container = [("eth0", "veth", "172.30.0.53/24")]  # Consul's fixed address in Compose
    with network_namespace(container, gateway="172.30.0.1") as namespace:
        in_namespace = ["ip", "netns", "exec", namespace]
        # As the hashicorp/consul entrypoint runs `agent -recursor=127.0.0.11`.
        agent = subprocess.Popen(
            [
                *in_namespace,
                str(consul),
                "agent",
                f"-data-dir={tmp_path / 'data'}",
                f"-config-dir={CONSUL_DIR}",
                "-recursor=127.0.0.11",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            peers = run([*in_namespace, consul, "operator", "raft", "list-peers"])
            while "leader" not in peers.stdout and time.monotonic() < deadline:
                assert agent.poll() is None, "consul agent exited"
                time.sleep(0.5)
                peers = run([*in_namespace, consul, "operator", "raft", "list-peers"])
            members = run([*in_namespace, consul, "members"])
        finally:
            os.killpg(agent.pid, signal.SIGKILL)
            log = agent.communicate(timeout=30)[0]
    assert "172.30.0.53:8300" in peers.stdout and "leader" in peers.stdout, log
    assert re.search(r"172\.30\.0\.53:8301\s+alive\s+server", members.stdout), members.stdout
