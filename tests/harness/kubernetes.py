"""The Kubernetes tools the chart tests need, built before the tests with progress lines.

Not part of ``platform_native build`` (servers.BUILDS): deploying the platform
natively needs none of them; only ``make test`` does (the tests marked k8s).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from platform_native import progress
from platform_native.build import build_many
from tests.harness.helm import (
    HELM_VERSION,
    KUBECONFORM_VERSION,
    build_helm,
    build_kubeconform,
)
from tests.harness.kube_apiserver import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    build_etcd,
    build_kubernetes,
)

TOOLS: dict[str, tuple[str, Callable[[], Path]]] = {
    "helm": (HELM_VERSION, build_helm),
    "kubeconform": (KUBECONFORM_VERSION, build_kubeconform),
}
API_SERVER: dict[str, tuple[str, Callable[[], Path]]] = {
    "etcd": (ETCD_VERSION, build_etcd),
    "kube-apiserver + kubectl": (KUBERNETES_VERSION, build_kubernetes),
}


def build_kubernetes_tools(api_server: bool) -> dict[str, Path]:
    """Build (or find in the cache) Helm and kubeconform, and etcd + kube-apiserver if asked."""
    progress.say("==> building the Kubernetes tools")
    return build_many({**TOOLS, **(API_SERVER if api_server else {})})
