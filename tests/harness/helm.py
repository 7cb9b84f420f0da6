"""Helm and kubeconform: the offline checkers of the services' charts.

Helm lints and renders a chart (``helm lint --strict``, ``helm template``);
kubeconform validates custom resources against JSON schemas made from their
CRDs. Both are built with ``go install`` from the Go module proxy at pinned
versions (helm.sh/helm/v3, github.com/yannh/kubeconform) and cached like the
servers. Helm runs with its cache, config and data homes in a private
directory, so nothing lands in the user's home and no repository is consulted.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from platform_native import build, gobuild
from platform_native.tools import run_tool

HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "3.22.0"
# The Kubernetes version `helm lint` and `helm template` assume: client-go v0.37.
HELM_KUBE_MINOR = "37"
KUBECONFORM_MODULE = "github.com/yannh/kubeconform/cmd/kubeconform"
KUBECONFORM_VERSION = "0.8.0"


def _helm_ldflags() -> str:
    """The -X flags Helm's own Makefile sets, so `helm version` tells the truth."""
    version = "helm.sh/helm/v3/internal/version"
    flags = {
        f"{version}.version": f"v{HELM_VERSION}",
        f"{version}.metadata": "",
        f"{version}.gitTreeState": "clean",
    }
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags[f"{package}.k8sVersionMajor"] = "1"
        flags[f"{package}.k8sVersionMinor"] = HELM_KUBE_MINOR
    return " ".join(f"-X {name}={value}" for name, value in flags.items())


def _helm_recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    gobuild.go_install(HELM_MODULE, HELM_VERSION, out, work, log, _helm_ldflags())


def _kubeconform_recipe(out: Path, work: Path, log: build.BuildLog) -> None:
    flags = f"-X main.version=v{KUBECONFORM_VERSION}"
    gobuild.go_install(KUBECONFORM_MODULE, KUBECONFORM_VERSION, out, work, log, flags)


def build_helm() -> Path:
    """Return the path of the ``helm`` binary, building it once."""
    return build.ensure("helm", HELM_VERSION, _helm_recipe) / "helm"


def build_kubeconform() -> Path:
    """Return the path of the ``kubeconform`` binary, building it once."""
    return build.ensure("kubeconform", KUBECONFORM_VERSION, _kubeconform_recipe) / "kubeconform"


_HELM_HOME = Path(tempfile.gettempdir()) / f"platform-helm-home-{os.getuid()}"


def helm_env() -> dict[str, str]:
    """Helm's homes in a private directory: no user config, no repositories, no cache."""
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(_HELM_HOME / "cache"),
        "HELM_CONFIG_HOME": str(_HELM_HOME / "config"),
        "HELM_DATA_HOME": str(_HELM_HOME / "data"),
    }


def run_helm(
    *args: str, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``helm`` with ``args`` (``lint``, ``template``, ...), offline."""
    return run_tool([str(binary or build_helm()), *args], check, env=helm_env())


def run_kubeconform(
    *args: str, binary: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``kubeconform`` with ``args``; give it only local ``-schema-location`` s."""
    return run_tool([str(binary or build_kubeconform()), *args], check)
