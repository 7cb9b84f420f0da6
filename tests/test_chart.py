"""The Helm chart of every rendered service, checked with Helm, kubeconform and schemas.

For the default, the worker and the customised service, with the default values
and every test values file in the chart's ci/: `helm lint --strict`, every
rendered object strictly valid, and the chart's ports, probes, settings, topics,
autoscaling and Kong route matching what the service itself serves and reads
and what its Kong snippet routes; its DSN a file from a Secret, or a CloudNativePG
cluster of its own. Bad values are refused with a clear message.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from tests.harness.helm import run_helm

from .charts import (
    CUSTOM_GROUPS,
    Object,
    chassis_python,
    group_of,
    kinds,
    one,
    pod_environment,
    pyproject_platform,
    service_facts,
    template,
    template_error,
    validate_builtin,
    validate_custom,
    values_files,
)
from .rendering import render
from .test_template import COMBINATIONS

pytestmark = pytest.mark.k8s

KONG_KINDS = {"Ingress", "HTTPRoute", "KongPlugin"}


@pytest.fixture(scope="module", params=list(COMBINATIONS))
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp(request.param), **COMBINATIONS[request.param])


@pytest.fixture(scope="module")
def chart(service: Path) -> Path:
    return service / "chart"


@pytest.fixture(scope="module")
def objects(chart: Path) -> list[Object]:
    return template(chart)


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chassis_python(tmp_path_factory.mktemp("chassis"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart")


@pytest.fixture(scope="module")
def facts(
    python: Path, service: Path, chart: Path, objects: list[Object], workdir: Path
) -> dict[str, Any]:
    values = yaml.safe_load((chart / "values.yaml").read_text())["http"]
    paths = [values["livenessPath"], values["readinessPath"], values["metricsPath"]]
    return service_facts(python, service, pod_environment(objects), paths, workdir)


def test_lint_strict_with_every_values_file(chart: Path) -> None:
    for values in values_files(chart):
        args = ["-f", str(values)] if values else []
        output = run_helm("lint", "--strict", str(chart), *args).stdout
        assert "1 chart(s) linted, 0 chart(s) failed" in output, output


def test_every_rendered_object_validates_strictly(chart: Path, workdir: Path) -> None:
    for values in values_files(chart):
        objects = template(chart, values)
        custom = [obj for obj in objects if group_of(obj) in CUSTOM_GROUPS]
        builtin = [obj for obj in objects if group_of(obj) not in CUSTOM_GROUPS]

        assert validate_builtin(builtin) == [], values
        summary = validate_custom(custom, workdir)
        assert f"Valid: {len(custom)}, Invalid: 0, Errors: 0, Skipped: 0" in summary, values


def test_the_pod_gets_only_settings_the_service_reads(
    objects: list[Object], facts: dict[str, Any]
) -> None:
    environment = pod_environment(objects)

    assert set(environment) - set(facts["env_names"]) == set()
    settings = facts["settings"]
    assert settings["consul_enabled"] is False  # consul-k8s syncs the catalog by default
    assert settings["http_host"] == "0.0.0.0"
    assert settings["service_instance_id"] == "pod-0"
    assert settings["service_advertise_address"] == "10.1.2.3"


def test_ports_and_probes_are_what_the_service_serves(
    objects: list[Object], facts: dict[str, Any]
) -> None:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    [port] = container["ports"]
    live = container["livenessProbe"]["httpGet"]["path"]
    ready = container["readinessProbe"]["httpGet"]["path"]
    answers = facts["answers"]

    assert port["containerPort"] == facts["settings"]["http_port"]
    assert one(objects, "Service")["spec"]["ports"][0]["targetPort"] == port["name"]
    assert container["startupProbe"]["httpGet"] == container["livenessProbe"]["httpGet"]
    # Before Kafka answers, the service is alive but not ready, and says why.
    assert answers[live]["status"] == 200
    assert answers[ready]["status"] == 503
    assert "Kafka" in answers[ready]["body"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]


def test_metrics_are_scraped_where_the_service_serves_them(
    objects: list[Object], facts: dict[str, Any]
) -> None:
    [endpoint] = one(objects, "ServiceMonitor")["spec"]["endpoints"]

    assert endpoint["port"] == "http"
    assert facts["answers"][endpoint["path"]]["status"] == 200
    assert "# TYPE" in facts["answers"][endpoint["path"]]["body"]


def test_shutdown_fits_in_the_grace_period(objects: list[Object], facts: dict[str, Any]) -> None:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert (
        spec["terminationGracePeriodSeconds"]
        > pre_stop + facts["settings"]["shutdown_grace_seconds"]
    )


def test_topics_are_the_ones_the_service_declares(
    service: Path, objects: list[Object], facts: dict[str, Any]
) -> None:
    platform = pyproject_platform(service)
    topics = [obj for obj in objects if obj["kind"] == "KafkaTopic"]
    settings = facts["settings"]

    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(platform["topics"])
    used = {settings["consumes_topic"], settings["produces_topic"], settings["dead_letter_topic"]}
    assert used == set(platform["topics"])
    for topic in topics:
        assert topic["spec"]["partitions"] == platform["partitions"]
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]


def test_keda_scales_on_the_consumer_groups_lag_up_to_the_partitions(
    service: Path, objects: list[Object], facts: dict[str, Any]
) -> None:
    scaled = one(objects, "ScaledObject")["spec"]
    [trigger] = scaled["triggers"]
    settings = facts["settings"]

    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == settings["consumes_topic"]
    assert trigger["metadata"]["consumerGroup"] == settings["consumer_group"]
    assert trigger["metadata"]["bootstrapServers"] == settings["kafka_bootstrap_servers"]
    assert settings["consumer_workers"] == 1  # one consumer per replica
    assert scaled["maxReplicaCount"] == pyproject_platform(service)["partitions"]
    assert scaled["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]


def test_without_keda_a_cpu_autoscaler_with_the_same_bound(service: Path, chart: Path) -> None:
    objects = template(chart, chart / "ci" / "hpa-values.yaml")
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]

    assert "ScaledObject" not in kinds(objects)
    assert hpa["maxReplicas"] == pyproject_platform(service)["partitions"]
    assert "ServiceMonitor" not in kinds(objects)
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_the_kong_route_is_the_snippets(service: Path, chart: Path) -> None:
    """The same paths, methods, upstream settings and rate limit as in Compose."""
    platform = pyproject_platform(service)
    if "kong_snippet" not in platform:  # a worker: no route anywhere
        for values in values_files(chart):
            assert kinds(template(chart, values)) & KONG_KINDS == set()
        return
    [kong] = yaml.safe_load((service / platform["kong_snippet"]).read_text())["services"]
    [route] = kong["routes"]
    [plugin] = kong["plugins"]

    ingress_objects = template(chart)
    ingress = one(ingress_objects, "Ingress")
    http_objects = template(chart, chart / "ci" / "httproute-values.yaml")
    http_route = one(http_objects, "HTTPRoute")

    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == route["paths"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["konghq.com/methods"].split(",") == route["methods"]
    [rule] = http_route["spec"]["rules"]
    matches = {(m["path"]["value"], m["method"]) for m in rule["matches"]}
    assert matches == {(p, m) for p in route["paths"] for m in route["methods"]}
    for objects, routing in ((ingress_objects, ingress), (http_objects, http_route)):
        notes = routing["metadata"]["annotations"]
        assert notes["konghq.com/strip-path"] == str(route["strip_path"]).lower()
        assert notes["konghq.com/preserve-host"] == str(route["preserve_host"]).lower()
        kong_plugin = one(objects, "KongPlugin")
        assert notes["konghq.com/plugins"] == kong_plugin["metadata"]["name"]
        assert kong_plugin["plugin"] == plugin["name"]
        assert kong_plugin["config"] == plugin["config"]
        upstream = one(objects, "Service")["metadata"]["annotations"]
        for setting in ("connect_timeout", "read_timeout", "write_timeout", "retries"):
            name = "konghq.com/" + setting.replace("_timeout", "-timeout")
            assert upstream[name] == str(kong[setting])
        assert upstream["konghq.com/protocol"] == kong["protocol"]


def test_settings_from_values_reach_the_service(
    python: Path, service: Path, chart: Path, workdir: Path
) -> None:
    objects = template(chart, chart / "ci" / "hpa-values.yaml")
    settings = service_facts(python, service, pod_environment(objects), [], workdir)["settings"]

    assert settings["log_level"] == "DEBUG"
    assert settings["consumer_batch_size"] == 500
    assert settings["otel_traces_sampler_arg"] == 0.5
    assert settings["consul_enabled"] is True
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"secretRef": {"name": "service-credentials"}} in container["envFrom"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["replicaCount=-1"], "replicaCount"),
        (["replicas=3"], "additional properties 'replicas' not allowed"),
        (["kafka.partitions=0"], "kafka/partitions"),
        (["image.tag=latest"], "image/tag"),
        (["http.livenessPath=health"], "http/livenessPath"),
        (["settings.log_level=DEBUG"], "'log_level' does not match pattern"),
        (["autoscaling.maxReplicas=99"], "would sit idle"),
        (["kafka.consumerWorkers=4", "autoscaling.maxReplicas=2"], "would sit idle"),
        (["terminationGracePeriodSeconds=15"], "must exceed preStopSeconds + shutdownGraceSeconds"),
        (["settings.HTTP_PORT=9999"], "the chart sets HTTP_PORT"),
        (["settings.DATABASE_URL=postgresql://u:p@db/d"], "the DSN carries a password"),
        (
            ["database.enabled=false", "database.cloudnativepg.enabled=true"],
            "needs database.enabled",
        ),
        (
            [
                "database.enabled=true",
                "database.existingSecret=db",
                "database.cloudnativepg.enabled=true",
            ],
            "choose one",
        ),
        (["database.cloudnativepg.imageName=postgres"], "database/cloudnativepg/imageName"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    chart: Path, values: list[str], message: str
) -> None:
    assert message in template_error(chart, *values)


def test_topics_with_names_kubernetes_refuses_get_valid_unique_object_names(chart: Path) -> None:
    objects = template(
        chart, None, "kafka.consumesTopic=Orders_V1.placed", "kafka.producesTopic=orders-v1.placed"
    )
    topics = [obj for obj in objects if obj["kind"] == "KafkaTopic"]
    names = {topic["spec"]["topicName"]: topic["metadata"]["name"] for topic in topics}

    assert names["orders-v1.placed"] == "orders-v1.placed"
    assert names["Orders_V1.placed"].startswith("orders-v1.placed-")
    assert len(set(names.values())) == 3


# -- state in PostgreSQL


def pod_spec(objects: list[Object]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def database_volume(objects: list[Object]) -> tuple[str, Object]:
    """DATABASE_URL_FILE, and the volume the service reads it from (mounted read-only)."""
    spec = pod_spec(objects)
    [container] = spec["containers"]
    [path] = [v["value"] for v in container["env"] if v["name"] == "DATABASE_URL_FILE"]
    [mount] = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return path, volume


def assert_no_password_in_the_environment(objects: list[Object]) -> None:
    spec = pod_spec(objects)
    for container in spec["containers"] + spec.get("initContainers", []):
        for variable in container.get("env", []):
            assert "secretKeyRef" not in variable.get("valueFrom", {}), variable
            assert "://" not in variable.get("value", ""), variable
    data = one(objects, "ConfigMap")["data"]
    assert "DATABASE_URL" not in data
    assert not [value for value in data.values() if "://" in value and "@" in value]


def test_the_database_is_mounted_for_a_stateful_service(
    service: Path, objects: list[Object], facts: dict[str, Any]
) -> None:
    stateful = pyproject_platform(service).get("database") == "postgres"
    [container] = pod_spec(objects)["containers"]
    ready = container["readinessProbe"]["httpGet"]["path"]

    assert ("DATABASE_URL_FILE" in pod_environment(objects)) is stateful
    assert any(m["name"] == "database" for m in container["volumeMounts"]) is stateful
    # The service took its DSN from the file and waits for PostgreSQL before it is ready.
    assert ("PostgreSQL" in facts["answers"][ready]["body"]) is stateful


def test_the_dsn_is_a_file_from_the_platform_teams_secret(chart: Path) -> None:
    objects = template(chart, chart / "ci" / "database-values.yaml")
    path, volume = database_volume(objects)
    deployment = one(objects, "Deployment")

    # Root's, group fsGroup: readable by the service's uid 10001 through its group only.
    assert pod_spec(objects)["securityContext"]["fsGroup"] == 10001
    assert volume["secret"] == {
        "secretName": "service-database",
        "defaultMode": 0o440,
        "items": [{"key": "dsn", "path": Path(path).name}],
    }
    assert deployment["metadata"]["annotations"] == {
        "secret.reloader.stakater.com/reload": "service-database"
    }
    assert_no_password_in_the_environment(objects)


def test_cloudnativepg_gives_the_service_a_cluster_of_its_own(chart: Path, workdir: Path) -> None:
    objects = template(chart, chart / "ci" / "cloudnativepg-values.yaml")
    cluster, database, pooler = (one(objects, kind) for kind in ("Cluster", "Database", "Pooler"))
    name = chart.parent.name.replace("-", "_")  # the service's role and database
    cluster_name = cluster["metadata"]["name"]

    assert cluster["spec"]["imageName"].split(":")[-1].startswith("15.")
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": name, "owner": name}
    assert database["spec"]["cluster"]["name"] == cluster_name
    assert (database["spec"]["name"], database["spec"]["owner"]) == (name, name)
    assert pooler["spec"]["cluster"]["name"] == cluster_name
    assert (pooler["spec"]["type"], pooler["spec"]["pgbouncer"]["poolMode"]) == ("rw", "session")
    summary = validate_custom([cluster, database, pooler], workdir)
    assert "Valid: 3, Invalid: 0, Errors: 0, Skipped: 0" in summary
    assert_no_password_in_the_environment(objects)


def test_behind_the_pooler_the_dsn_is_written_from_the_app_secret(
    chart: Path, tmp_path: Path
) -> None:
    """CloudNativePG's app Secret points at the rw Service: an init container writes the
    Pooler's DSN from its credentials; here it runs on awkward ones."""
    objects = template(chart, chart / "ci" / "cloudnativepg-values.yaml")
    spec = pod_spec(objects)
    [init] = spec["initContainers"]
    path, volume = database_volume(objects)
    volumes = {v["name"]: v for v in spec["volumes"]}
    pooler = one(objects, "Pooler")["metadata"]["name"]
    cluster = one(objects, "Cluster")["metadata"]["name"]
    python, flag, script, credentials, address, target = init["command"]

    assert volume["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert (mounts["database-credentials"], mounts["database"] + "/url") == (credentials, target)
    assert target == path
    assert volumes["database-credentials"]["secret"]["secretName"] == f"{cluster}-app"
    assert address == f"{pooler}.services.svc:5432"

    password = "p@ss:w/rd%?#"
    secret = {"username": "billing_api", "password": password, "dbname": "billing_api"}
    for key, value in secret.items():
        (tmp_path / key).write_text(value)
    run = [sys.executable, flag, script, str(tmp_path), address, str(tmp_path / "url")]
    subprocess.run(run, check=True, timeout=30)
    dsn = urlsplit((tmp_path / "url").read_text())

    assert (dsn.scheme, dsn.hostname, dsn.port) == ("postgresql", f"{pooler}.services.svc", 5432)
    assert (unquote(dsn.username or ""), unquote(dsn.password or "")) == ("billing_api", password)
    assert dsn.path == "/billing_api"
    assert stat.S_IMODE((tmp_path / "url").stat().st_mode) & 0o077 == 0
    assert python == "python"


def test_without_the_pooler_the_service_uses_the_app_secrets_uri(chart: Path) -> None:
    values = chart / "ci" / "cloudnativepg-values.yaml"
    objects = template(chart, values, "database.cloudnativepg.pooler.enabled=false")
    _, volume = database_volume(objects)

    assert "Pooler" not in kinds(objects)
    assert "initContainers" not in pod_spec(objects)
    cluster = one(objects, "Cluster")["metadata"]["name"]
    assert volume["secret"]["secretName"] == f"{cluster}-app"
    assert volume["secret"]["items"] == [{"key": "uri", "path": "url"}]
