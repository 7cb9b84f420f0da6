"""Every object every chart renders, applied to a real kube-apiserver with a dry run.

Also the platform's own Kafka objects (with Strimzi's CRDs installed), and
`./deploy-all.sh --k8s` against no cluster and against this one.

A real API server (built from k8s.io/kubernetes, over a real etcd, on loopback)
with the upstream CRDs of ../shared/k8s-crds installed checks what no JSON
schema does: defaulting, CEL rules of the CRDs, cross-field validation of the
built-in kinds. Server-side apply with dryRun=All and strict field validation,
as `kubectl apply --server-side --dry-run=server --validate=strict` sends it:
nothing is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from platform_native.servers import free_ports, running
from tests.harness.helm import build_helm
from tests.harness.kube_apiserver import Etcd, KubeApiserver, build_kubernetes

from .charts import CRDS, NAMESPACE, Object, template, values_files
from .rendering import render
from .test_kubernetes_platform import (
    KAFKA_CHART,
    STRIMZI_CRDS,
    basic_tools,
    deploy_k8s,
    release,
)
from .test_template import COMBINATIONS

pytestmark = [pytest.mark.infra, pytest.mark.k8s]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiserver]:
    workdir = tmp_path_factory.mktemp("kubernetes")
    etcd = Etcd(workdir / "etcd")
    server = KubeApiserver(workdir / "kube-apiserver", etcd)
    with running(etcd, server):
        for path in [*sorted(CRDS.glob("*.yaml")), *STRIMZI_CRDS]:
            server.install_crd(yaml.safe_load(path.read_text()))
        for name in (NAMESPACE, release("kafka")["namespace"]):
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            status, answer = server.apply(namespace, "", dry_run=False)
            assert status in (200, 201), answer
        yield server


def refused(api: KubeApiserver, objects: list[Object], namespace: str = NAMESPACE) -> list[str]:
    problems = []
    for obj in objects:
        status, answer = api.apply(obj, namespace, dry_run=True)
        if status not in (200, 201):
            message = answer.get("message", answer) if isinstance(answer, dict) else answer
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {status} {message}")
    return problems


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_the_api_server_accepts_every_object(
    api: KubeApiserver, combination: str, tmp_path: Path
) -> None:
    chart = render(tmp_path, **COMBINATIONS[combination]) / "chart"
    for values in values_files(chart):
        objects = template(chart, values)

        assert refused(api, objects) == [], values


def test_the_api_server_refuses_what_it_must(api: KubeApiserver, tmp_path: Path) -> None:
    """The dry run is a real check: a typo, a bad CRD field and a bad quantity are refused."""
    objects = template(render(tmp_path) / "chart")
    by_kind = {obj["kind"]: obj for obj in objects}
    by_kind["Deployment"]["spec"]["replicsa"] = 2
    by_kind["ScaledObject"]["spec"]["maxReplicaCount"] = "three"
    by_kind["ConfigMap"]["data"]["bad key!"] = "x"
    problems = refused(api, [by_kind["Deployment"], by_kind["ScaledObject"], by_kind["ConfigMap"]])

    assert len(problems) == 3, problems
    assert ".spec.replicsa: field not declared in schema" in problems[0]
    assert "maxReplicaCount" in problems[1]
    assert "bad key!" in problems[2]


def test_the_api_server_accepts_the_platforms_kafka(api: KubeApiserver) -> None:
    for values in values_files(KAFKA_CHART):
        objects = template(KAFKA_CHART, values)

        assert refused(api, objects, release("kafka")["namespace"]) == [], values


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """PATH: the script's basics, kubectl and helm (built), but no helmfile."""
    kubectl_dir = build_kubernetes()
    helm_dir = build_helm().parent
    return [basic_tools(tmp_path_factory.mktemp("tools") / "bin"), kubectl_dir, helm_dir]


def test_without_a_reachable_cluster_it_fails_with_one_line(
    tools: list[Path], tmp_path: Path
) -> None:
    (port,) = free_ports(1)  # nothing listens there
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "gone",
            "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        })
    )  # fmt: skip
    result = deploy_k8s(tools, "up", KUBECONFIG=str(kubeconfig))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: no reachable Kubernetes cluster (kube context: gone); "
        "set one with kubectl config use-context"
    ]


def test_with_a_cluster_it_goes_on_to_helmfile(
    api: KubeApiserver, tools: list[Path], tmp_path: Path
) -> None:
    """The cluster check passes against a real API server; then helmfile is required."""
    result = deploy_k8s(tools, "up", KUBECONFIG=str(api.kubeconfig(tmp_path / "config")))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: ./deploy-all.sh --k8s needs kubectl, helm, helmfile on PATH (missing: helmfile)"
    ]
