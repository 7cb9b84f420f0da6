"""Where secrets come from: files, then a Vault-API server (OpenBao or Vault), then env.

Every secret setting (a `SecretStr` field, say KAFKA_SASL_PASSWORD) is looked up in this
order, the first found wins:

1. files, the Docker and Kubernetes convention: `<NAME>_FILE` names a file holding it, or
   `SECRETS_DIR` holds a file named like the field (`kafka_sasl_password`);
2. the KV v2 secret `VAULT_KV_MOUNT`/`VAULT_SECRET_PATH` (default `secret`,
   `services/<OTEL_SERVICE_NAME>`) on `VAULT_ADDR`, its keys named like the fields. The
   service logs in with AppRole (`VAULT_ROLE_ID_FILE`, `VAULT_SECRET_ID_FILE`), Kubernetes
   (`VAULT_KUBERNETES_ROLE`) or, for local use, a token file (`VAULT_TOKEN_FILE`);
3. plain environment variables, for a developer running a service by hand: the service
   warns at start for each one (`environment_warnings`).

With `VAULT_DATABASE_ROLE`, the database's user and password are short-lived ones from the
database secrets engine (`DatabaseCredentials`): the lease is renewed, new credentials are
taken before it lapses, and every new connection uses the current ones (the DSN of
DATABASE_URL[_FILE] gives host, port and database). A secret's value is never logged;
errors are one line that names the server, the path or the file, never a value.

hvac is synchronous: at start-up (settings) it is called directly, before the event loop
serves; afterwards only through `asyncio.to_thread`. Needs the `vault` extra for (2).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:
    import hvac

    from .health import Readiness

logger = logging.getLogger(__name__)

SECRETS = "secrets"  # the readiness component
# Which source gave each secret field of the settings made last (file, openbao, environment).
_sources: ContextVar[dict[str, str]] = ContextVar("secret_sources")
# True while settings are made without asking the server (see `without_vault`).
_skip_vault: ContextVar[bool] = ContextVar("skip_vault", default=False)


_WRAPPING = re.compile(r"^\d+ errors? occurred:$")


class SecretsError(ConnectionError):
    """A secret could not be read; the message is one line that names what and where.

    A ConnectionError: a request that needs the database meanwhile gets 503, a message
    waits (its partition is held), as while PostgreSQL itself is away."""


class SecretsConfig(BaseSettings):
    """Where the secrets are: SECRETS_DIR and the Vault-API server's VAULT_* settings."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    secrets_dir: str = ""
    vault_addr: str = ""
    vault_auth: Literal["approle", "kubernetes", "token"] = "approle"
    vault_role_id_file: str = ""
    vault_secret_id_file: str = ""
    vault_token_file: str = ""
    vault_kubernetes_role: str = ""
    vault_kubernetes_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
    vault_approle_mount: str = "approle"
    vault_kubernetes_mount: str = "kubernetes"
    vault_kv_mount: str = "secret"
    vault_secret_path: str = ""
    vault_kv: bool = True  # false: only the database credentials come from OpenBao
    vault_database_mount: str = "database"
    vault_database_role: str = ""
    vault_timeout_seconds: int = 5


def is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr


def _read_file(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as error:
        raise SecretsError(f"cannot read {what} from {path}: {error.strerror}") from None


def secret_file(name: str) -> Path | None:
    """The file the secret field `name` is read from, if any: `<NAME>_FILE`, else
    `SECRETS_DIR/<name>` when it exists."""
    environment = {key.upper(): value for key, value in os.environ.items()}
    if named := environment.get(f"{name.upper()}_FILE", ""):
        return Path(named)
    folder = SecretsConfig().secrets_dir
    path = Path(folder) / name
    return path if folder and path.is_file() else None


class FileSecrets(PydanticBaseSettingsSource):
    """`<NAME>_FILE` and `SECRETS_DIR/<name>` for every secret field."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads them all at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if is_secret(field) and (path := secret_file(name)) is not None:
                found[name] = _read_file(path, name.upper())
                _record(name, f"file {path}")
        return found


class SecretFile:
    """A secret's file, read again when it changes (a rotated Kubernetes or Docker secret).

    Kubernetes updates a mounted Secret by pointing a symlink at a new directory; an
    operator may rewrite the file. Either changes the inode, size or modification time
    of the file the path leads to, which is what `changed` compares.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._stamp = self._stat()

    @classmethod
    def of(cls, name: str) -> SecretFile | None:
        path = secret_file(name)
        return cls(name, path) if path is not None else None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            found = self.path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_size, found.st_mtime_ns

    def changed(self) -> str | None:
        """The new value if the file changed since it was last read, else None.

        A file missing for a moment (being replaced) is no change: the value in hand stays.
        """
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return None
        value = _read_file(self.path, self.name.upper())
        self._stamp = stamp
        return value


class VaultSecrets(PydanticBaseSettingsSource):
    """The service's KV v2 secret on the Vault-API server, when VAULT_ADDR is set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        config = SecretsConfig()
        if not (config.vault_addr and config.vault_kv) or _skip_vault.get():
            return {}
        fields = self.settings_cls.model_fields
        service = str(
            os.environ.get("OTEL_SERVICE_NAME") or fields["otel_service_name"].default or ""
        )
        path = config.vault_secret_path or f"services/{service}"
        values = VaultClient(config).login().read_kv(path)
        found = {key: value for key, value in values.items() if key in fields}
        for name in found:
            _record(name, f"openbao {config.vault_kv_mount}/{path}")
        return found


class PlainSecretsWarning(PydanticBaseSettingsSource):
    """Wraps the environment and .env sources to note the secrets they gave."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        found = self.inner()
        for name, field in self.settings_cls.model_fields.items():
            if is_secret(field) and found.get(name) and name not in _current():
                _record(name, "environment")
        return found


def _current() -> dict[str, str]:
    try:
        return _sources.get()
    except LookupError:
        return {}


def _record(name: str, source: str) -> None:
    _sources.set({**_current(), name: source})


@contextmanager
def without_vault() -> Iterator[None]:
    """Settings made meanwhile skip the server: what a service needs to say, on its own
    port, why it is not ready while its secrets cannot be read."""
    token = _skip_vault.set(True)
    try:
        yield
    finally:
        _skip_vault.reset(token)


def start_recording() -> None:
    """Forget what the settings made before recorded (one settings object at a time)."""
    _sources.set({})


def recorded() -> dict[str, str]:
    """{field: where it came from} for the secrets of the settings made last."""
    return dict(_current())


def environment_warnings(sources: dict[str, str]) -> list[str]:
    """One warning per secret read from a plain environment variable."""
    return [
        f"{name.upper()} is read from the environment: fine for a service run by hand; a "
        "deployed service takes it from a file (SECRETS_DIR, *_FILE) or OpenBao (VAULT_ADDR)"
        for name, source in sources.items()
        if source == "environment"
    ]


# -- the Vault-API client


@dataclass
class Lease:
    """Credentials and the lease they hold, with when they were issued and lapse."""

    lease_id: str
    username: str
    password: str
    duration: float
    renewable: bool
    issued: float  # time.monotonic()

    @property
    def expires(self) -> float:
        return self.issued + self.duration


class VaultClient:
    """hvac, logged in as the service; its calls block (use asyncio.to_thread when serving)."""

    def __init__(self, config: SecretsConfig) -> None:
        try:
            import hvac
        except ImportError as error:
            raise SecretsError(
                "VAULT_ADDR is set but hvac is missing: pip install 'event-chassis[vault]'"
            ) from error
        self.config = config
        self.address = config.vault_addr
        self.client: hvac.Client = hvac.Client(
            url=config.vault_addr, timeout=config.vault_timeout_seconds
        )
        self.token_expires = float("inf")

    def login(self) -> VaultClient:
        """Log in with the configured method; the token's lease is noted for renewal."""
        config = self.config

        def approle() -> Any:
            role_id = _read_file(Path(config.vault_role_id_file), "VAULT_ROLE_ID_FILE")
            secret_id = _read_file(Path(config.vault_secret_id_file), "VAULT_SECRET_ID_FILE")
            return self.client.auth.approle.login(
                role_id, secret_id, mount_point=config.vault_approle_mount
            )

        def kubernetes() -> Any:
            jwt = _read_file(Path(config.vault_kubernetes_token_file), "the service account token")
            return self.client.auth.kubernetes.login(
                config.vault_kubernetes_role, jwt, mount_point=config.vault_kubernetes_mount
            )

        if config.vault_auth == "token":
            self.client.token = _read_file(Path(config.vault_token_file), "VAULT_TOKEN_FILE")
            answer = self._call("looking the token up", self.client.auth.token.lookup_self)
            ttl = float(answer["data"].get("ttl") or 0)
        else:
            login = approle if config.vault_auth == "approle" else kubernetes
            answer = self._call(f"the {config.vault_auth} login", login)
            ttl = float(answer["auth"].get("lease_duration") or 0)
        self.token_expires = time.monotonic() + ttl if ttl else float("inf")
        return self

    def read_kv(self, path: str) -> dict[str, str]:
        mount = self.config.vault_kv_mount
        answer = self._call(
            f"reading {mount}/{path}",
            lambda: self.client.secrets.kv.v2.read_secret_version(
                path, mount_point=mount, raise_on_deleted_version=True
            ),
            path=f"{mount}/{path}",
        )
        return {str(key): str(value) for key, value in answer["data"]["data"].items()}

    def database_credentials(self, role: str) -> Lease:
        mount = self.config.vault_database_mount
        answer = self._call(
            f"reading {mount}/creds/{role}",
            lambda: self.client.secrets.database.generate_credentials(role, mount_point=mount),
            path=f"{mount}/creds/{role}",
        )
        return Lease(
            lease_id=answer["lease_id"],
            username=answer["data"]["username"],
            password=answer["data"]["password"],
            duration=float(answer["lease_duration"]),
            renewable=bool(answer["renewable"]),
            issued=time.monotonic(),
        )

    def renew(self, lease: Lease) -> float:
        """Renew ``lease`` by its own duration; return the seconds it now has left."""
        answer = self._call(
            f"renewing lease {lease.lease_id}",
            lambda: self.client.sys.renew_lease(lease.lease_id, increment=int(lease.duration)),
        )
        return float(answer["lease_duration"])

    def renew_token(self) -> None:
        answer = self._call("renewing the token", self.client.auth.token.renew_self)
        ttl = float(answer["auth"].get("lease_duration") or 0)
        self.token_expires = time.monotonic() + ttl if ttl else float("inf")

    def _call(self, what: str, call: Callable[[], Any], path: str = "") -> Any:
        """Run one hvac call; every failure becomes one SecretsError line (no value in it)."""
        import hvac.exceptions
        import requests

        try:
            answer = call()
        except requests.RequestException as error:
            raise SecretsError(
                f"OpenBao unreachable at {self.address} ({what}): {type(error).__name__}"
            ) from None
        except hvac.exceptions.VaultDown:
            raise SecretsError(
                f"OpenBao at {self.address} is sealed ({what}): unseal it first"
            ) from None
        except hvac.exceptions.InvalidPath:
            where = path or what
            raise SecretsError(f"OpenBao has no secret at {where} ({self.address})") from None
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden) as error:
            first = _first_error(error)
            if "login" in what:
                files = (
                    f" (VAULT_ROLE_ID_FILE={self.config.vault_role_id_file}, "
                    f"VAULT_SECRET_ID_FILE={self.config.vault_secret_id_file})"
                    if self.config.vault_auth == "approle"
                    else ""
                )
                raise SecretsError(
                    f"OpenBao refused {what}{files} at {self.address}: {first}"
                ) from None
            raise SecretsError(f"OpenBao refused {what} at {self.address}: {first}") from None
        except hvac.exceptions.VaultError as error:
            first = _first_error(error)
            raise SecretsError(f"OpenBao failed {what} at {self.address}: {first}") from None
        if not isinstance(answer, dict):
            raise SecretsError(f"OpenBao gave no answer to {what} at {self.address}")
        return answer


def _first_error(error: Exception) -> str:
    """The server's reason, without Go's "1 error occurred:" wrapping around it."""
    errors = getattr(error, "errors", None)
    lines = [line.strip(" \t*") for line in str(errors[0] if errors else error).splitlines()]
    useful = [line for line in lines if line and not _WRAPPING.match(line)]
    return (useful or [type(error).__name__])[0][:200]


# -- short-lived database credentials


class DatabaseCredentials:
    """The service's PostgreSQL user from the database engine: renewed, replaced in time.

    `dsn()` is what every new connection uses. The lease is renewed at two thirds of its
    duration; when it cannot be renewed far enough (its maximum TTL) or not at all, new
    credentials are taken then, a third of a lease before the old ones lapse, so the
    connections the pool opens from then on log in as the new user. Failures make the
    service not ready (`secrets` in /health/ready) and are retried every few seconds.
    """

    def __init__(self, config: SecretsConfig, base_dsn: str, readiness: Readiness) -> None:
        self.config = config
        self.role = config.vault_database_role
        self.base = urllib.parse.urlsplit(base_dsn)
        self.readiness = readiness
        self.lease: Lease | None = None
        self.rotations = 0
        self.generation = 0  # of the credentials: a connection notes the one it logged in with
        self.issued = asyncio.Event()
        self._client: VaultClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._said = ""
        readiness.fail(SECRETS, "database credentials not issued yet")

    def dsn(self) -> str:
        """The DSN with the current credentials; SecretsError until some were issued."""
        lease = self.lease
        if lease is None:
            raise SecretsError(f"no database credentials yet: {self.readiness.problems}")
        user = urllib.parse.quote(lease.username, safe="")
        password = urllib.parse.quote(lease.password, safe="")
        host = self.base.hostname or ""
        port = f":{self.base.port}" if self.base.port else ""
        netloc = f"{user}:{password}@{host}{port}"
        return urllib.parse.urlunsplit(self.base._replace(netloc=netloc))

    async def wait(self) -> None:
        """Until the first credentials were issued."""
        await self.issued.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="database-credentials")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                wait = await self.step()
            except SecretsError as error:
                self._fail(str(error))
                wait = 2.0
            await asyncio.sleep(wait)

    async def step(self) -> float:
        """Renew or replace what is due; return the seconds until the next step."""
        now = time.monotonic()
        client = await self._logged_in()
        lease = self.lease
        if lease is None or now >= lease.issued + lease.duration * 2 / 3:
            if lease is not None and lease.renewable:
                left = await self._renew(client, lease)
                if left >= lease.duration * 2 / 3:  # renewed for (nearly) a whole lease
                    lease.issued, lease.duration = time.monotonic(), left
                    self._ok()
                    return max(left * 2 / 3, 1.0)
            elif lease is not None:
                logger.warning(
                    "database credentials lease %s is not renewable: taking new ones",
                    lease.lease_id,
                )
            await self._issue(client)
        self._ok()
        due = self.lease.issued + self.lease.duration * 2 / 3 if self.lease else 0.0
        return max(due - time.monotonic(), 0.5)

    async def _renew(self, client: VaultClient, lease: Lease) -> float:
        """The seconds the renewed lease has; 0 when the server refused to renew it."""
        try:
            return await asyncio.to_thread(client.renew, lease)
        except SecretsError as error:
            if "unreachable" in str(error) or "sealed" in str(error):
                raise
            logger.warning("database credentials not renewed (%s): taking new ones", error)
            return 0.0

    async def _logged_in(self) -> VaultClient:
        client = self._client
        if client is None or time.monotonic() > client.token_expires - 60:
            if client is not None:
                try:
                    await asyncio.to_thread(client.renew_token)
                    return client
                except SecretsError:
                    pass  # log in again below
            client = await asyncio.to_thread(lambda: VaultClient(self.config).login())
            self._client = client
        return client

    async def _issue(self, client: VaultClient) -> None:
        try:
            lease = await asyncio.to_thread(client.database_credentials, self.role)
        except SecretsError as error:
            if "permission denied" not in str(error):
                raise
            self._client = None  # the token lapsed: log in again and retry once
            client = await self._logged_in()
            lease = await asyncio.to_thread(client.database_credentials, self.role)
        rotated = self.lease is not None
        self.lease = lease
        self.generation += 1
        if rotated:
            self.rotations += 1
        logger.info(
            "database credentials %s (lease %ss, %s)",
            "rotated" if rotated else "issued",
            int(lease.duration),
            lease.lease_id,
        )
        self.issued.set()

    def _ok(self) -> None:
        if self._said:
            logger.info("database credentials from OpenBao again")
        self._said = ""
        self.readiness.ok(SECRETS)

    def _fail(self, reason: str) -> None:
        lease = self.lease
        if lease is not None:
            left = lease.expires - time.monotonic()
            reason = f"{reason} (the current credentials lapse in {max(left, 0):.0f}s)"
        if reason.split(" (the current")[0] != self._said.split(" (the current")[0]:
            logger.warning("database credentials: %s", reason)
        self._said = reason
        self.readiness.fail(SECRETS, f"database credentials: {reason}")


def database_credentials(base_dsn: str, readiness: Readiness) -> DatabaseCredentials | None:
    """DatabaseCredentials when VAULT_DATABASE_ROLE is set (and VAULT_ADDR), else None."""
    config = SecretsConfig()
    if not (config.vault_addr and config.vault_database_role):
        return None
    return DatabaseCredentials(config, base_dsn, readiness)
