"""Render a service's Helm chart and validate what it renders, with the real tools.

Helm and kubeconform are built from the Go module proxy (tests.harness.helm).
Built-in kinds are validated strictly against the Kubernetes JSON schemas that
`kubernetes-validate` ships; custom resources (Strimzi, KEDA, Kong, Gateway API,
Prometheus Operator, CloudNativePG) by kubeconform against the JSON schemas of their
upstream CRDs in ../shared/k8s-crds. Both reject unknown fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from platform_native import installer
from tests.harness.helm import run_helm, run_kubeconform

from .rendering import REPO, wheelhouse

KUBERNETES_VERSION = "1.37"
CRDS = REPO.parent / "shared" / "k8s-crds"
CRD_SCHEMAS = CRDS / "json" / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
CUSTOM_GROUPS = {
    "kafka.strimzi.io",
    "keda.sh",
    "configuration.konghq.com",
    "gateway.networking.k8s.io",
    "monitoring.coreos.com",
    "postgresql.cnpg.io",
    "external-secrets.io",
}
NAMESPACE = "services"

Object = dict[str, Any]


def values_files(chart: Path) -> list[Path | None]:
    """The default values (None) and every test values file the chart ships in ci/."""
    return [None, *sorted((chart / "ci").glob("*-values.yaml"))]


def values_args(values: Path | None, *sets: str) -> list[str]:
    args = ["-f", str(values)] if values else []
    return args + [arg for item in sets for arg in ("--set", item)]


def template(chart: Path, values: Path | None = None, *sets: str) -> list[Object]:
    """`helm template` with the release named like the chart: the objects it renders."""
    name = yaml.safe_load((chart / "Chart.yaml").read_text())["name"]
    args = ["template", name, str(chart), "--namespace", NAMESPACE, *values_args(values, *sets)]
    rendered = run_helm(*args).stdout
    return [obj for obj in yaml.safe_load_all(rendered) if obj]


def template_error(chart: Path, *sets: str, values: Path | None = None) -> str:
    """Render values that must be refused; returns Helm's message."""
    args = ["template", "x", str(chart), *values_args(values, *sets)]
    result = run_helm(*args, check=False)
    assert result.returncode != 0, f"helm template accepted {sets}:\n{result.stdout[:3000]}"
    return result.stderr


def group_of(obj: Object) -> str:
    return str(obj["apiVersion"]).rpartition("/")[0]


def validate_builtin(objects: list[Object]) -> list[str]:
    """Problems of the built-in kinds, strictly (no unknown fields), for Kubernetes 1.37."""
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    return problems


def validate_custom(objects: list[Object], workdir: Path) -> str:
    """kubeconform -strict over the custom resources; returns its summary line."""
    manifest = workdir / "custom-resources.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    result = run_kubeconform(
        "-strict", "-summary", "-output", "text", "-schema-location", str(CRD_SCHEMAS),
        str(manifest), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def one(objects: list[Object], kind: str) -> Object:
    [found] = [obj for obj in objects if obj["kind"] == kind]
    return found


def kinds(objects: list[Object]) -> set[str]:
    return {obj["kind"] for obj in objects}


# -- what the service itself reads and serves


def chassis_python(directory: Path) -> Path:
    """A virtualenv with the event-chassis (the services' only dependency) from .wheels,
    with its PostgreSQL extra (a stateful service imports it)."""
    python = installer.create_venv(directory / ".venv")
    installer.install(python, "event-chassis[testing,postgres]", find_links=[wheelhouse()])
    return python


def package_of(service: Path) -> str:
    scripts = tomllib.loads((service / "pyproject.toml").read_text())["project"]["scripts"]
    return str(next(iter(scripts.values()))).split(".", 1)[0]


def pod_environment(objects: list[Object]) -> dict[str, str]:
    """The variables a pod of the Deployment gets: its ConfigMap, then its own env."""
    configmap = one(objects, "ConfigMap")
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [ref["configMapRef"]["name"] for ref in container["envFrom"][:1]] == [
        configmap["metadata"]["name"]
    ]
    env = dict(configmap["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        # The downward API's values, as a pod would see them.
        field = variable["valueFrom"]["fieldRef"]["fieldPath"]
        env[variable["name"]] = {"metadata.name": "pod-0", "status.podIP": "10.1.2.3"}[field]
    return env


def service_facts(
    python: Path, service: Path, env: dict[str, str], paths: list[str], cwd: Path
) -> dict[str, Any]:
    """tests/service_facts.py run by the service's code in the pod's environment."""
    script = Path(__file__).with_name("service_facts.py")
    if "DATABASE_URL_FILE" in env:  # the pod's file from its Secret; nothing listens there
        dsn = cwd / "database-url"
        password = "not-a-secret"  # nothing listens on port 9: only the file's shape matters
        dsn.write_text(f"postgresql://service:{password}@127.0.0.1:9/service")
        env = {**env, "DATABASE_URL_FILE": str(dsn)}
    result = subprocess.run(
        [str(python), str(script), package_of(service), *paths],
        cwd=cwd,  # no .env file there
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(service / "src"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


def pyproject_platform(service: Path) -> dict[str, Any]:
    platform: dict[str, Any] = tomllib.loads((service / "pyproject.toml").read_text())["tool"][
        "event-platform"
    ]
    return platform
