"""The platform on Kubernetes (infrastructure/kubernetes), checked without a cluster.

No cluster runs here and the upstream charts cannot be downloaded, so what is
checked is what the platform owns: helmfile.yaml pins every chart and names
only values files that exist; the platform's own chart (the Strimzi `Kafka` and
node pools) lints and renders objects that are valid against Strimzi's CRDs;
the addresses the services' charts use by default are the ones the platform's
values give its Kafka, Consul, collector and Kong; and `./deploy-all.sh --k8s`
without its tools fails with one clear line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from tests.harness.helm import run_helm

from .charts import CRDS, Object, one, template, values_files
from .rendering import REPO, render

pytestmark = pytest.mark.k8s

KUBERNETES = REPO / "infrastructure" / "kubernetes"
HELMFILE = KUBERNETES / "helmfile.yaml"
KAFKA_CHART = KUBERNETES / "charts" / "platform-kafka"
STRIMZI_CRDS = sorted((KUBERNETES / "crds").glob("*.yaml"))
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def helmfile() -> dict[str, Any]:
    state: dict[str, Any] = yaml.safe_load(HELMFILE.read_text())
    return state


def release(name: str) -> dict[str, Any]:
    [found] = [r for r in helmfile()["releases"] if r["name"] == name]
    release: dict[str, Any] = found
    return release


def release_values(name: str) -> dict[str, Any]:
    [path] = release(name)["values"]
    values: dict[str, Any] = yaml.safe_load((KUBERNETES / path).read_text())
    return values


def crd_to_jsonschema() -> ModuleType:
    """The shared script that turns CRDs into strict JSON schemas (kubeconform's way)."""
    spec = importlib.util.spec_from_file_location(
        "crd_to_jsonschema", CRDS / "crd_to_jsonschema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_helmfile_pins_every_chart_and_its_values_exist() -> None:
    state = helmfile()
    repositories = {repo["name"] for repo in state["repositories"]}
    releases = {f"{r['namespace']}/{r['name']}" for r in state["releases"]}

    for entry in state["releases"]:
        chart = entry["chart"]
        assert EXACT_VERSION.match(str(entry["version"])), entry
        if chart.startswith("./"):
            metadata = yaml.safe_load((KUBERNETES / chart / "Chart.yaml").read_text())
            assert metadata["version"] == entry["version"], entry
        else:
            assert chart.split("/")[0] in repositories, entry
        for path in entry.get("values", []):
            assert isinstance(yaml.safe_load((KUBERNETES / path).read_text()), dict), path
        assert set(entry.get("needs", [])) <= releases, entry
    charts = {entry["chart"].split("/")[-1] for entry in state["releases"]}
    assert {
        "strimzi-kafka-operator", "platform-kafka", "kube-prometheus-stack", "keda",
        "consul", "ingress", "jaeger", "opentelemetry-collector", "cloudnative-pg",
    } <= charts  # fmt: skip


def test_the_platforms_kafka_chart_lints_and_renders_valid_kraft_objects() -> None:
    to_json_schema = crd_to_jsonschema().to_json_schema
    schemas = {}
    for path in STRIMZI_CRDS:
        crd = yaml.safe_load(path.read_text())
        [version] = crd["spec"]["versions"]
        schemas[crd["spec"]["names"]["kind"]] = to_json_schema(version["schema"]["openAPIV3Schema"])

    for values in values_files(KAFKA_CHART):
        args = ["-f", str(values)] if values else []
        assert "0 chart(s) failed" in run_helm("lint", "--strict", str(KAFKA_CHART), *args).stdout
        objects = template(KAFKA_CHART, values)
        assert sorted(obj["kind"] for obj in objects) == ["Kafka", "KafkaNodePool", "KafkaNodePool"]
        for obj in objects:
            assert obj["apiVersion"] == "kafka.strimzi.io/v1"
            errors = jsonschema.Draft4Validator(schemas[obj["kind"]]).iter_errors(obj)
            assert [error.message for error in errors] == [], (values, obj["kind"])
        pools = [obj for obj in objects if obj["kind"] == "KafkaNodePool"]
        assert sorted(role for pool in pools for role in pool["spec"]["roles"]) == [
            "broker",
            "controller",
        ]  # KRaft: controllers and brokers, no ZooKeeper


def test_bad_kafka_values_are_refused() -> None:
    for sets, message in (
        (["replication.minInsyncReplicas=4"], "must not exceed replication.factor"),
        (["brokers.replicas=2"], "must not exceed brokers.replicas"),
        (["brokers.storage=lots"], "brokers/storage"),
        (["zookeeper.replicas=3"], "additional properties 'zookeeper' not allowed"),
    ):
        args = [arg for item in sets for arg in ("--set", item)]
        result = run_helm("template", "kafka", str(KAFKA_CHART), *args, check=False)
        assert result.returncode != 0 and message in result.stderr, (sets, result.stderr)


@pytest.fixture(scope="module")
def service_objects(tmp_path_factory: pytest.TempPathFactory) -> list[Object]:
    return template(render(tmp_path_factory.mktemp("service")) / "chart")


def test_a_services_defaults_reach_the_platforms_kafka(service_objects: list[Object]) -> None:
    kafka = one(template(KAFKA_CHART), "Kafka")
    [plain] = [item for item in kafka["spec"]["kafka"]["listeners"] if not item["tls"]]
    namespace = release("kafka")["namespace"]
    config = one(service_objects, "ConfigMap")["data"]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap.{namespace}.svc:{plain['port']}"

    assert config["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
    for topic in (obj for obj in service_objects if obj["kind"] == "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    operators = kafka["spec"]["entityOperator"]
    watched = {operators[op]["watchedNamespace"] for op in ("topicOperator", "userOperator")}
    assert watched == {"services"}  # where deploy.sh installs the services
    assert "services" in release_values("strimzi")["watchNamespaces"]
    assert (
        'NAMESPACE="${PLATFORM_SERVICES_NAMESPACE:-services}"'
        in (KUBERNETES / "deploy.sh").read_text()
    )


def test_a_services_defaults_reach_consul_the_collector_and_kong(
    service_objects: list[Object],
) -> None:
    config = one(service_objects, "ConfigMap")["data"]
    consul = release_values("consul")
    collector = release_values("otel-collector")
    jaeger = release_values("jaeger")
    sync = consul["syncCatalog"]

    assert config["CONSUL_HTTP_ADDR"] == (
        f"http://{consul['global']['name']}-server.{release('consul')['namespace']}.svc:8500"
    )
    # The catalog sync registers the service, under its own name: it must not register too.
    assert sync["enabled"] and sync["toConsul"] and not sync["addK8SNamespaceSuffix"]
    assert "services" in sync["k8sAllowNamespaces"]
    assert config["CONSUL_ENABLED"] == "false"
    observability = release("otel-collector")["namespace"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
        f"http://{collector['fullnameOverride']}.{observability}.svc:4318"
    )
    assert collector["config"]["exporters"]["otlp"]["endpoint"] == (
        f"{jaeger['fullnameOverride']}.{release('jaeger')['namespace']}.svc:4317"
    )
    ingress = one(service_objects, "Ingress")
    kong = release_values("kong")
    assert (
        ingress["spec"]["ingressClassName"]
        == kong["controller"]["ingressController"]["ingressClass"]
    )
    assert kong["gateway"]["env"]["database"] == "off"  # DB-less
    spec = release_values("monitoring")["prometheus"]["prometheusSpec"]
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False  # the services' too


def test_no_secret_is_committed_for_grafana() -> None:
    grafana = release_values("monitoring")["grafana"]

    assert "adminPassword" not in grafana
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    assert "create secret generic grafana-admin" in (KUBERNETES / "deploy.sh").read_text()


def deploy_k8s(path_dirs: list[Path], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`./deploy-all.sh --k8s ...` with only `path_dirs` on PATH."""
    return subprocess.run(
        ["/bin/bash", str(REPO / "deploy-all.sh"), "--k8s", *args],
        env={"PATH": os.pathsep.join(map(str, path_dirs)), "HOME": os.environ["HOME"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def basic_tools(directory: Path) -> Path:
    """A PATH directory with what the script itself uses, but no kubectl, helm, helmfile."""
    directory.mkdir(exist_ok=True)
    for tool in ("bash", "dirname", "basename", "head", "base64", "cat"):
        (directory / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    return directory


@pytest.mark.parametrize("command", ["up", "status", "down"])
def test_without_kubectl_and_helm_it_fails_with_one_line(command: str, tmp_path: Path) -> None:
    result = deploy_k8s([basic_tools(tmp_path / "bin")], command)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: ./deploy-all.sh --k8s needs kubectl, helm on PATH (missing: kubectl helm)"
    ]
