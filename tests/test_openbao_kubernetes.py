"""Kubernetes auth, as the chart's SecretStore uses it, against a real API server and OpenBao.

The bootstrap's Kubernetes role of a service binds its service account in its namespace:
a token the API server issued for `alpha`'s account logs in as alpha and reads alpha's
path, and is refused beta's path (403); another account's token is refused the login.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions
import pytest

from platform_deploy import openbao
from platform_native.servers import OpenBao, running
from tests.harness.kube_apiserver import Etcd, KubeApiserver

pytestmark = pytest.mark.k8s

NAMESPACE = "services"


@dataclass
class Cluster:
    api: KubeApiserver
    bao: OpenBao

    def token(self, account: str) -> str:
        """A service-account token the API server issues (what a pod or ESO presents)."""
        path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{account}/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        status, answer = self.api.request(
            "POST", path, json.dumps(body).encode(), "application/json"
        )
        assert status == 201, answer
        return str(answer["status"]["token"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("openbao-kubernetes")
    etcd = Etcd(root / "etcd")
    api = KubeApiserver(root / "kube-apiserver", etcd)
    bao = OpenBao(root / "openbao")
    with running(etcd, api, bao):
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        assert api.apply(namespace, "", dry_run=False)[0] in (200, 201)
        for name in ("alpha", "beta", "stranger"):
            account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
            assert api.apply(account, NAMESPACE, dry_run=False)[0] in (200, 201)
        client = hvac.Client(url=bao.url, token=bao.root_token)
        secrets = {name: {"consul_http_token": f"{name}-token"} for name in ("alpha", "beta")}
        openbao.bootstrap(
            client, ["alpha", "beta"], root / "credentials", secrets=secrets,
            kubernetes_namespace=NAMESPACE,
        )  # fmt: skip
        ca = (api.cert_dir / "apiserver.crt").read_text()
        openbao.configure_kubernetes(client, api.url, ca, reviewer_jwt=api.token)
        yield Cluster(api, bao)


def login(cluster: Cluster, role: str, account: str) -> hvac.Client:
    client = hvac.Client(url=cluster.bao.url)
    client.auth.kubernetes.login(role, cluster.token(account))
    return client


def read(client: hvac.Client, service: str) -> dict[str, str]:
    answer = client.secrets.kv.v2.read_secret_version(
        openbao.kv_path(service), mount_point=openbao.KV_MOUNT, raise_on_deleted_version=True
    )
    return dict(answer["data"]["data"])


def test_a_services_account_reads_its_own_path_and_is_refused_another(cluster: Cluster) -> None:
    alpha = login(cluster, "alpha", "alpha")

    assert read(alpha, "alpha") == {"consul_http_token": "alpha-token"}
    with pytest.raises(hvac.exceptions.Forbidden):
        read(alpha, "beta")


def test_another_account_cannot_log_in_as_the_service(cluster: Cluster) -> None:
    with pytest.raises(hvac.exceptions.Forbidden, match="service account name not authorized"):
        login(cluster, "alpha", "stranger")


def test_the_audit_log_names_the_kubernetes_role(cluster: Cluster) -> None:
    login(cluster, "beta", "beta")
    shown = openbao.audit_lines(Path(cluster.bao.audit_log).read_text().splitlines(), 10_000)

    assert [line for line in shown if " alpha " in line and "secret/data/services/beta" in line]
    assert [line for line in shown if "auth/kubernetes/login" in line]
