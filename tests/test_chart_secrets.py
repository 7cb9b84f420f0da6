"""The chart's secrets from OpenBao (secrets.enabled): an External Secrets Operator
SecretStore (Vault provider, Kubernetes auth) and ExternalSecret, valid against the
operator's v1 schemas in ../shared/k8s-crds, whose Secret the Deployment mounts as files
(SECRETS_DIR) and Stakater Reloader watches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .charts import Object, kinds, one, pod_environment, template, template_error, validate_custom
from .rendering import render

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("secrets-chart"), database="postgres") / "chart"


def container(objects: list[Object]) -> dict[str, Any]:
    [found] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(found)


def test_secrets_render_a_valid_secret_store_and_external_secret_mounted_as_files(
    chart: Path, tmp_path: Path
) -> None:
    objects = template(chart, chart / "ci" / "secrets-values.yaml")
    store, external = one(objects, "SecretStore"), one(objects, "ExternalSecret")
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    secret = external["spec"]["target"]["name"]
    directory = pod_environment(objects)["SECRETS_DIR"]
    [mount] = [m for m in container(objects)["volumeMounts"] if m["mountPath"] == directory]
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    vault = store["spec"]["provider"]["vault"]

    summary = validate_custom([store, external], tmp_path)
    assert "Valid: 2, Invalid: 0, Errors: 0, Skipped: 0" in summary
    assert (vault["version"], vault["path"]) == ("v2", "secret")
    assert vault["auth"]["kubernetes"] == {
        "mountPath": "kubernetes",
        "role": "value-architect",
        "serviceAccountRef": {"name": spec["serviceAccountName"]},
    }
    assert external["spec"]["secretStoreRef"] == {
        "kind": "SecretStore",
        "name": store["metadata"]["name"],
    }
    assert external["spec"]["dataFrom"] == [{"extract": {"key": "services/value-architect"}}]
    assert mount["readOnly"] is True
    assert volume["secret"] == {"secretName": secret, "defaultMode": 0o440}
    reload = deployment["metadata"]["annotations"]["secret.reloader.stakater.com/reload"]
    assert reload.split(",") == ["value-architect-database", secret]
    # Nothing secret in the environment: the secrets are files.
    for variable in container(objects).get("env", []):
        assert "secretKeyRef" not in variable.get("valueFrom", {}), variable


def test_without_secrets_nothing_of_them_is_rendered(chart: Path) -> None:
    objects = template(chart)

    assert not {"SecretStore", "ExternalSecret"} & kinds(objects)
    assert "SECRETS_DIR" not in pod_environment(objects)


def test_a_bad_secrets_value_is_refused(chart: Path) -> None:
    message = template_error(chart, "secrets.server=openbao:8200", "secrets.enabled=true")

    assert "secrets.server" in message or "/secrets/server" in message, message
