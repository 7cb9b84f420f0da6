"""etcd and kube-apiserver on loopback: a real API server to dry-run manifests against.

No kubelet, scheduler or controller runs: the API server only validates and
defaults objects, which is exactly what a server-side dry run
(``kubectl apply --server-side --dry-run=server``) asks of it. Custom
resources are checked once their CRDs are installed (:meth:`KubeApiserver.install_crd`).

Both are built from the Go module proxy: etcd from go.etcd.io/etcd/server/v3
(its go.mod's local replaces dropped), kube-apiserver (and kubectl, for the
tests of ``deploy-all.sh --k8s``) from k8s.io/kubernetes
with its 33 ``./staging`` replaces swapped for the published k8s.io modules of
the same release (``v0.<minor>.<patch>``). Everything binds 127.0.0.1; the
endpoint reconciler is off because it refuses a loopback advertise address.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from platform_native import build, gobuild
from platform_native.probes import http_get
from platform_native.processes import HOST, free_ports
from platform_native.servers.base import Server, ServerError
from platform_native.tools import run_tool

ETCD_MODULE = "go.etcd.io/etcd/server/v3"
ETCD_VERSION = "3.7.3"
KUBERNETES_MODULE = "k8s.io/kubernetes"
KUBERNETES_VERSION = "1.37.2"


def _etcd_recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    source = gobuild.module_source(ETCD_MODULE, ETCD_VERSION, work, log)
    flags = f"-X go.etcd.io/etcd/api/v3/version.GitSHA=v{ETCD_VERSION}"
    gobuild.go_build(source, ".", out / "etcd", log, flags)


def _kube_apiserver_ldflags() -> str:
    """The version stamps Kubernetes' hack/lib/version.sh sets."""
    major, minor, _patch = KUBERNETES_VERSION.split(".")
    stamps = {
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    packages = ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
    return " ".join(f"-X {p}.{k}={v}" for p in packages for k, v in stamps.items())


def _kubernetes_recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    """k8s.io/kubernetes requires its staging modules at v0.0.0 through local replaces.

    module_source drops those replaces; the same modules are published as
    k8s.io/<name> v0.<minor>.<patch>, so each v0.0.0 requirement is pinned to that.
    """
    source = gobuild.module_source(KUBERNETES_MODULE, KUBERNETES_VERSION, work, log)
    staging_version = "v0." + KUBERNETES_VERSION.split(".", 1)[1]
    mod = json.loads(log.run(["go", "mod", "edit", "-json"], source, gobuild.GO_ENV, True))
    pins = [
        f"-require={req['Path']}@{staging_version}"
        for req in mod.get("Require") or []
        if req["Path"].startswith("k8s.io/") and req["Version"] == "v0.0.0"
    ]
    if not pins:
        raise log.failure("no k8s.io/* v0.0.0 requirements found: has the module layout changed?")
    log.run(["go", "mod", "edit", *pins], source, gobuild.GO_ENV)
    for command in ("kube-apiserver", "kubectl"):  # kubectl shares most of its packages
        gobuild.go_build(source, f"./cmd/{command}", out / command, log, _kube_apiserver_ldflags())


def build_etcd() -> Path:
    """Return the path of the ``etcd`` binary, building it once."""
    return build.ensure("etcd", ETCD_VERSION, _etcd_recipe) / "etcd"


def build_kubernetes() -> Path:
    """Return the directory holding ``kube-apiserver`` and ``kubectl``, building them once."""
    return build.ensure("kubernetes", KUBERNETES_VERSION, _kubernetes_recipe)


def build_kube_apiserver() -> Path:
    """Return the path of the ``kube-apiserver`` binary, building it once."""
    return build_kubernetes() / "kube-apiserver"


class Etcd(Server):
    """A one-member etcd cluster on loopback, the API server's storage."""

    name = "etcd"
    version = ETCD_VERSION

    def __init__(self, workdir: Path | str, *, binary: Path | None = None) -> None:
        super().__init__(workdir)
        self.binary = binary or build_etcd()
        self.client_port, self.peer_port, self.metrics_port = free_ports(3)

    @property
    def url(self) -> str:
        """The client URL, for ``--etcd-servers``."""
        return f"http://{HOST}:{self.client_port}"

    def command(self) -> list[str]:
        peer = f"http://{HOST}:{self.peer_port}"
        return [
            str(self.binary),
            "--name=default",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            f"--listen-metrics-urls=http://{HOST}:{self.metrics_port}",
        ]

    def health(self) -> bool:
        status, body = http_get(f"{self.url}/health")
        return status == 200 and json.loads(body).get("health") == "true"

    def ports(self) -> dict[str, int]:
        return {"client": self.client_port, "peer": self.peer_port, "metrics": self.metrics_port}

    def addresses(self) -> dict[str, str]:
        return {"client": self.url}


class KubeApiserver(Server):
    """kube-apiserver on 127.0.0.1 with a static admin token, over the given etcd."""

    name = "kube-apiserver"
    version = KUBERNETES_VERSION
    ready_timeout = 120.0

    def __init__(self, workdir: Path | str, etcd: Etcd, *, binary: Path | None = None) -> None:
        super().__init__(workdir)
        self.binary = binary or build_kube_apiserver()
        self.etcd = etcd
        (self.port,) = free_ports(1)
        self.token = secrets.token_hex(16)
        self.cert_dir = self.workdir / "certs"

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig for kubectl and helm that reaches this server as admin."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {
                "server": self.url, "certificate-authority": str(self.cert_dir / "apiserver.crt"),
            }}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }  # fmt: skip
        path.write_text(json.dumps(config))  # JSON is YAML
        path.chmod(0o600)
        return path

    def configure(self) -> None:
        """A service-account signing key (openssl) and the admin's token file."""
        key = self.workdir / "service-account.key"
        if not key.exists():
            run_tool(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(key)])
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f"{self.token},admin,admin-uid,system:masters\n")
        tokens.chmod(0o600)

    def command(self) -> list[str]:
        key = self.workdir / "service-account.key"
        return [
            str(self.binary),
            f"--etcd-servers={self.etcd.url}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={self.port}",
            f"--cert-dir={self.cert_dir}",
            "--endpoint-reconciler-type=none",  # it refuses a loopback advertise address
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={key}",
            f"--service-account-signing-key-file={key}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/24",
        ]

    def health(self) -> bool:
        status, _body = self.request("GET", "/readyz")
        return status == 200

    def ports(self) -> dict[str, int]:
        return {"https": self.port}

    def addresses(self) -> dict[str, str]:
        return {"https": self.url}

    # -- a small client: just what a dry run needs

    def _tls(self) -> ssl.SSLContext:
        """Trust the self-signed certificate the server wrote into its cert dir."""
        return ssl.create_default_context(cafile=str(self.cert_dir / "apiserver.crt"))

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        """One authenticated request; returns (status, decoded JSON or text)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        handler = urllib.request.HTTPSHandler(context=self._tls())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
        try:
            with opener.open(request, timeout=30) as response:
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as error:
            status, raw = int(error.code), error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def resource_path(self, api_version: str, kind: str, namespace: str) -> str:
        """The collection URL of ``kind`` (plural and scope from API discovery)."""
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, found = self.request("GET", base)
        if status != 200:
            raise ServerError(f"{api_version} is not served ({status}): {found}")
        for resource in found["resources"]:
            if resource["kind"] == kind and "/" not in resource["name"]:
                scope = f"/namespaces/{namespace}" if resource["namespaced"] else ""
                return f"{base}{scope}/{resource['name']}"
        raise ServerError(f"{kind} is not a resource of {api_version}")

    def apply(self, obj: dict[str, Any], namespace: str, *, dry_run: bool) -> tuple[int, Any]:
        """Server-side apply, strict about unknown fields; with ``dry_run`` nothing is stored."""
        path = self.resource_path(obj["apiVersion"], obj["kind"], namespace)
        query = "fieldManager=platform-tests&fieldValidation=Strict&force=true"
        if dry_run:
            query += "&dryRun=All"
        url = f"{path}/{obj['metadata']['name']}?{query}"
        body = json.dumps(obj).encode()
        return self.request("PATCH", url, body, "application/apply-patch+yaml")

    def install_crd(self, crd: dict[str, Any], timeout: float = 30.0) -> None:
        """Create a CustomResourceDefinition and wait until its API is served."""
        status, answer = self.apply(crd, "", dry_run=False)
        if status not in (200, 201):
            raise ServerError(f"CRD {crd['metadata']['name']} refused ({status}): {answer}")
        group = crd["spec"]["group"]
        deadline = time.monotonic() + timeout
        for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
            while self.request("GET", f"/apis/{group}/{version}")[0] != 200:
                if time.monotonic() > deadline:
                    raise ServerError(f"{group}/{version} not served after {timeout:.0f}s")
                time.sleep(0.2)
