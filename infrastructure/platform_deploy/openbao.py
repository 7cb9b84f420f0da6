"""OpenBao's bootstrap: per service a policy, an AppRole, its KV secrets and database role.

One idempotent function for every mode (the native server and Compose's container are
both reached at a loopback URL with the root token ``platform_native.servers.openbao``
kept): a second run changes nothing that holds, and a service added since (`new`) gets
its policy and role. What it sets up, per service NAME:

- ``secret/data/services/NAME`` (KV v2): the service's secrets, keyed by the chassis'
  setting names (``kafka_sasl_password``, ``consul_http_token``); made even when empty
  (the native platform's Kafka and Consul need none), keys set by hand are kept;
- ``database/creds/NAME``: short-lived PostgreSQL credentials, a login role that is a
  member of the service's own role and acts as it (``SET role``), so every table stays
  the service role's when the credentials are revoked;
- policy ``service-NAME``: read those two paths and nothing else;
- AppRole ``NAME`` with that policy; its role_id and a secret_id are written as files
  (0600) that the service reads (``VAULT_ROLE_ID_FILE``, ``VAULT_SECRET_ID_FILE``),
  never handed over in the environment;
- ``kubernetes`` auth roles of the same name when asked (the Helm chart's
  ``SecretStore``).

The audit device is the server's own configuration (OpenBao refuses to enable one
through the API); the bootstrap checks one is on. Uses hvac, so it runs in the .venv.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions

from platform_native.databases import SUPERUSER, role_name, write_secret
from platform_native.servers.openbao import initialise_and_unseal

KV_MOUNT = "secret"
DATABASE_MOUNT = "database"
APPROLE_MOUNT = "approle"
CONNECTION = "postgres"  # the database engine's connection to the platform's PostgreSQL
TOKEN_TTL = "1h"  # a service's token; the chassis logs in again before it lapses
TOKEN_MAX_TTL = "24h"


def kv_path(service: str) -> str:
    """The KV v2 path of ``service``'s secrets, below the ``secret`` mount."""
    return f"services/{service}"


def policy_name(service: str) -> str:
    return f"service-{service}"


def policy(service: str) -> str:
    """HCL that reads ``service``'s KV secrets and database credentials, nothing else."""
    return f"""\
path "{KV_MOUNT}/data/{kv_path(service)}" {{
  capabilities = ["read"]
}}
path "{DATABASE_MOUNT}/creds/{service}" {{
  capabilities = ["read"]
}}
"""


# Statements run by the database engine as the platform's superuser.
CREATE = """\
CREATE ROLE "{{{{name}}}}" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}'
  IN ROLE {role};
ALTER ROLE "{{{{name}}}}" SET role = '{role}';
"""
REVOKE = """\
REVOKE {role} FROM "{{{{name}}}}";
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{{{name}}}}';
DROP ROLE IF EXISTS "{{{{name}}}}";
"""


@dataclass(frozen=True)
class PostgresAdmin:
    """How OpenBao reaches the platform's PostgreSQL as its superuser."""

    address: str  # host:port as OpenBao sees it (127.0.0.1:PORT, or postgres:5432)
    username: str
    password: str


@dataclass(frozen=True)
class Credentials:
    """Where a service's AppRole credentials are (files, 0600)."""

    role_id_file: Path
    secret_id_file: Path


class BootstrapError(RuntimeError):
    """OpenBao refused a step; the message names it (never a secret)."""


def _mounts(client: hvac.Client) -> tuple[dict[str, object], dict[str, object]]:
    engines = client.sys.list_mounted_secrets_engines()["data"]
    methods = client.sys.list_auth_methods()["data"]
    return engines, methods


def enable_engines(client: hvac.Client, *, database: bool, kubernetes: bool) -> None:
    """KV v2 at ``secret/``, AppRole, and the database engine and Kubernetes auth if asked."""
    engines, methods = _mounts(client)
    if f"{KV_MOUNT}/" not in engines:
        client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
    if database and f"{DATABASE_MOUNT}/" not in engines:
        client.sys.enable_secrets_engine("database", path=DATABASE_MOUNT)
    if f"{APPROLE_MOUNT}/" not in methods:
        client.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
    if kubernetes and "kubernetes/" not in methods:
        client.sys.enable_auth_method("kubernetes", path="kubernetes")
    if not client.sys.list_enabled_audit_devices()["data"]:
        raise BootstrapError("openbao has no audit device: its configuration must declare one")


def configure_database(
    client: hvac.Client, admin: PostgresAdmin, services: Sequence[str], ttl: str, max_ttl: str
) -> None:
    """The engine's connection to PostgreSQL, and a role per service issuing credentials."""
    client.secrets.database.configure(
        name=CONNECTION,
        plugin_name="postgresql-database-plugin",
        allowed_roles=list(services),
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{admin.address}/postgres",
        username=admin.username,
        password=admin.password,
        password_authentication="scram-sha-256",
        verify_connection=True,
    )
    for service in services:
        role = role_name(service)
        client.secrets.database.create_role(
            name=service,
            db_name=CONNECTION,
            creation_statements=[CREATE.format(role=role)],
            revocation_statements=[REVOKE.format(role=role)],
            default_ttl=ttl,
            max_ttl=max_ttl,
        )


def configure_kubernetes(
    client: hvac.Client, host: str, ca_pem: str, reviewer_jwt: str | None = None
) -> None:
    """Kubernetes auth against the cluster at ``host``: a pod's service-account token is
    checked with the API server's TokenReview (as ``reviewer_jwt``, or the pod's own token
    when that is None); the Helm chart's SecretStore logs in this way."""
    client.auth.kubernetes.configure(
        kubernetes_host=host,
        kubernetes_ca_cert=ca_pem,
        token_reviewer_jwt=reviewer_jwt,
        disable_local_ca_jwt=True,  # OpenBao need not run in the cluster
    )


def _keep_or_new_secret_id(
    client: hvac.Client, service: str, path: Path, owner: int | None
) -> None:
    """Keep a secret_id file OpenBao still knows; otherwise write a new one."""
    if path.exists():
        try:
            known = client.auth.approle.read_secret_id(service, path.read_text().strip())
        except hvac.exceptions.InvalidPath:  # older hvac/servers answer 404 for unknown ids
            known = None
        if known and known.get("data"):
            return
    secret_id = client.auth.approle.generate_secret_id(service)["data"]["secret_id"]
    write_secret(path, secret_id + "\n", owner)


def ensure_service(
    client: hvac.Client,
    service: str,
    secrets: Mapping[str, str],
    credentials_dir: Path,
    *,
    kubernetes_namespace: str | None = None,
    owner: int | None = None,
) -> Credentials:
    """``service``'s policy, AppRole (credentials as 0600 files) and KV secrets."""
    client.sys.create_or_update_policy(policy_name(service), policy(service))
    client.auth.approle.create_or_update_approle(
        service,
        token_policies=[policy_name(service)],
        token_ttl=TOKEN_TTL,
        token_max_ttl=TOKEN_MAX_TTL,
        token_type="service",
    )
    if kubernetes_namespace is not None:
        client.auth.kubernetes.create_role(
            service,
            bound_service_account_names=[service],
            bound_service_account_namespaces=[kubernetes_namespace],
            policies=[policy_name(service)],
            ttl=TOKEN_TTL,
        )
    current = _read_kv(client, service)
    wanted = {**(current or {}), **secrets}  # what someone else put there stays
    if wanted != current:  # also an empty secret: the service's path always exists
        client.secrets.kv.v2.create_or_update_secret(
            kv_path(service), secret=wanted, mount_point=KV_MOUNT
        )
    folder = credentials_dir / service
    role_id = client.auth.approle.read_role_id(service)["data"]["role_id"]
    credentials = Credentials(folder / "role_id", folder / "secret_id")
    write_secret(credentials.role_id_file, role_id + "\n", owner)
    _keep_or_new_secret_id(client, service, credentials.secret_id_file, owner)
    return credentials


def _read_kv(client: hvac.Client, service: str) -> dict[str, str] | None:
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            kv_path(service), mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return None
    return dict(answer["data"]["data"])


def bootstrap(
    client: hvac.Client,
    services: Sequence[str],
    credentials_dir: Path,
    *,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    database: PostgresAdmin | None = None,
    database_services: Sequence[str] = (),
    ttl: str = "1h",
    max_ttl: str = "24h",
    kubernetes_namespace: str | None = None,
    owner: int | None = None,
) -> dict[str, Credentials]:
    """Set OpenBao up for ``services``; return where each one's AppRole credentials are.

    ``secrets`` are the KV values per service; ``database_services`` (those with
    ``database = "postgres"``) get a database role on ``database`` with ``ttl``; ``owner``
    is the uid the credential files are handed to (a container's user, in Compose).
    """
    try:
        enable_engines(
            client, database=database is not None, kubernetes=kubernetes_namespace is not None
        )
        if database is not None and database_services:
            configure_database(client, database, database_services, ttl, max_ttl)
        return {
            service: ensure_service(
                client,
                service,
                (secrets or {}).get(service, {}),
                credentials_dir,
                kubernetes_namespace=kubernetes_namespace,
                owner=owner,
            )
            for service in services
        }
    except hvac.exceptions.VaultError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BootstrapError(f"openbao bootstrap failed: {first}") from error


# -- the native platform (`platform_native up` recorded the servers in state.json)


def native_services_env(credentials: Credentials, url: str) -> dict[str, str]:
    """What a service gets to reach OpenBao: its address and its AppRole files' paths."""
    return {
        "VAULT_ADDR": url,
        "VAULT_ROLE_ID_FILE": str(credentials.role_id_file),
        "VAULT_SECRET_ID_FILE": str(credentials.secret_id_file),
    }


def native(
    state_dir: Path, services: Sequence[str], database_services: Sequence[str]
) -> tuple[str, dict[str, Credentials]]:
    """Bootstrap the native OpenBao for ``services``; return its URL and their credentials
    (in ``<state-dir>/openbao/<service>/``). Its database engine uses the native
    PostgreSQL's superuser; credentials last an hour, renewable for a day."""
    servers = json.loads((state_dir / "infra" / "state.json").read_text())["servers"]
    try:
        bao, postgres = servers["openbao"], servers["postgres"]
    except KeyError as error:
        raise BootstrapError(f"no native {error} recorded: ./deploy-all.sh --native up") from None
    url = bao["addresses"]["url"]
    token = initialise_and_unseal(url, Path(bao["workdir"]) / "secrets")
    password_file = Path(postgres["addresses"]["superuser_password_file"])
    admin = PostgresAdmin(
        postgres["addresses"]["address"],
        SUPERUSER,
        password_file.read_text().strip(),
    )
    found = bootstrap(
        hvac.Client(url=url, token=token),
        services,
        state_dir / "openbao",
        database=admin if database_services else None,
        database_services=database_services,
    )
    return url, found


# -- Compose: the same bootstrap through the published port


def compose(
    state_dir: Path,
    services: Sequence[str],
    database_services: Sequence[str],
    postgres_password: str,
    url: str,
    postgres_address: str = "postgres:5432",
) -> dict[str, Credentials]:
    """Initialise and unseal Compose's OpenBao at ``url`` (its key and root token in
    ``<state-dir>/openbao-server/``), then the bootstrap; the AppRole files in
    ``<state-dir>/openbao/<service>/`` belong to the images' user (uid 10001), as the DSN
    files do, for Compose secrets are bind mounts that keep the host's owner and mode."""
    from platform_deploy.databases import SERVICE_UID

    token = initialise_and_unseal(url, state_dir / "openbao-server")
    admin = PostgresAdmin(postgres_address, SUPERUSER, postgres_password)
    return bootstrap(
        hvac.Client(url=url, token=token),
        services,
        state_dir / "openbao",
        database=admin if database_services else None,
        database_services=database_services,
        owner=SERVICE_UID,
    )


# -- `./deploy-all.sh logs openbao`: who read which path


def audit_lines(lines: Iterable[str], tail: int = 200) -> list[str]:
    """One line per answer in OpenBao's audit log (JSON lines): when, which service (its
    AppRole or Kubernetes role), what it did on which path, and whether it was refused."""
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("type") != "response":
            continue
        auth = entry.get("auth") or {}
        metadata = auth.get("metadata") or {}  # AppRole: role_name; Kubernetes: role
        who = metadata.get("role_name") or metadata.get("role") or auth.get("display_name")
        request = entry.get("request") or {}
        error = entry.get("error")
        reasons = [part.strip(" \t*") for part in str(error or "").splitlines()]
        result = f"refused: {[r for r in reasons if r][-1]}" if error else "ok"
        when = str(entry.get("time", ""))[:19].replace("T", " ")
        operation, path = request.get("operation", "?"), request.get("path", "?")
        found.append(f"{when}  {who or '-':<24} {operation:<7} {path}  {result}")
    return found[-tail:]
