"""Each service's own PostgreSQL database and role: created once, reported by `status`.

A service gets a role and a database of the same name (its name, "-" written "_"), the
database owned by the role. CONNECT is revoked from PUBLIC, so no other role (another
service) may connect to it; natively pg_hba.conf also lets a role reach only the database
of its own name (``sameuser``). The password is generated here and kept, inside the DSN,
in a 0600 file; the server only ever gets its SCRAM-SHA-256 verifier, so the password is
in no SQL statement, server log or process list. The same code runs natively (psql over
TCP) and in Compose (psql through ``docker compose exec``): only the SQL runner differs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import subprocess
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

from platform_native.tools import ToolError

# (database, psql script) -> what psql printed (unaligned, tuples only).
SqlRunner = Callable[[str, str], str]

# How psql runs every script: no ~/.psqlrc, rows only, stop at the first error.
PSQL_OPTIONS = ("--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1")
SUPERUSER = "postgres"
PSQL_TIMEOUT = 120.0
# Role and database names: plain identifiers, never quoted, never a built-in's.
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED = {SUPERUSER, "template0", "template1", "public"}
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)

# Idempotent: each statement creates what is missing or sets what must hold.
ENSURE_SQL = """\
SELECT 'CREATE ROLE {name}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}')
\\gexec
ALTER ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  PASSWORD '{verifier}';
SELECT 'CREATE DATABASE {name} OWNER {name}'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')
\\gexec
REVOKE ALL ON DATABASE {name} FROM PUBLIC;
"""
# Run in a service's database: its size and, once the chassis made it, the outbox backlog.
REPORT_SQL = """\
SELECT to_regclass('event_outbox') IS NOT NULL AS has_outbox,
  pg_size_pretty(pg_database_size(current_database())) AS size
\\gset
\\if :has_outbox
SELECT :'size' || ', outbox backlog ' || count(*) FROM event_outbox WHERE published_at IS NULL;
\\else
SELECT :'size' || ', no event_outbox table';
\\endif
"""


def role_name(service: str) -> str:
    """The role and database of ``service`` (``billing-api`` -> ``billing_api``)."""
    name = service.replace("-", "_")
    if not _NAME.match(name) or name in _RESERVED or name.startswith("pg_"):
        raise ValueError(f"{service!r} cannot name a PostgreSQL role and database")
    return name


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677 keys)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def psql_runner(psql: Sequence[str], env: dict[str, str] | None = None) -> SqlRunner:
    """Run scripts as the superuser with ``psql`` (the command up to its connection options:
    ``[psql, --host=..., --port=...]`` or ``[docker, compose, exec, -T, postgres, psql]``)."""

    def run(database: str, script: str) -> str:
        command = [*psql, *PSQL_OPTIONS, f"--username={SUPERUSER}", f"--dbname={database}"]
        result = subprocess.run(
            command,
            input=script,
            env=env,
            capture_output=True,
            text=True,
            timeout=PSQL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise ToolError(f"psql ({database}) failed: {result.stderr.strip()}")
        return result.stdout

    return run


def url_file(secrets_dir: Path, service: str) -> Path:
    """Where ``service``'s DSN file is in ``secrets_dir``."""
    return secrets_dir / f"{role_name(service)}.url"


def write_secret(path: Path, text: str, owner: int | None = None) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600, in a 0700 folder);
    ``owner`` hands the file to that uid (a container's user reads it through a bind
    mount, which keeps the host's owner and mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as secret:
        os.fchmod(secret.fileno(), 0o600)  # an older file keeps its mode otherwise
        if owner is not None:
            os.fchown(secret.fileno(), owner, owner)
        secret.write(text)
    return path


class Databases:
    """The services' databases on one server: ``run`` executes psql scripts as superuser,
    ``secrets`` holds each service's DSN file, ``address`` is how services reach it."""

    def __init__(
        self, run: SqlRunner, secrets_dir: Path, address: str, owner: int | None = None
    ) -> None:
        self.run = run
        self.secrets_dir = secrets_dir
        self.address = address
        self.owner = owner  # the uid the DSN files are handed to (None: whoever writes them)

    def url_file(self, service: str) -> Path:
        """The 0600 file holding ``service``'s DSN (its DATABASE_URL_FILE)."""
        return url_file(self.secrets_dir, service)

    def _kept_password(self, service: str) -> str | None:
        try:
            text = self.url_file(service).read_text().strip()
        except FileNotFoundError:
            return None
        return urllib.parse.urlsplit(text).password

    def ensure(self, service: str) -> str:
        """Create ``service``'s role and database unless they exist; return its DSN.

        A second call keeps the password (read back from the DSN file) and changes
        nothing else; the DSN file is rewritten with the server's current address.
        """
        name = role_name(service)
        password = self._kept_password(service) or secrets.token_urlsafe(24)
        self.run(SUPERUSER, ENSURE_SQL.format(name=name, verifier=scram_verifier(password)))
        dsn = f"postgresql://{name}:{password}@{self.address}/{name}"
        write_secret(self.url_file(service), dsn + "\n", self.owner)
        return dsn

    def server_version(self) -> str:
        """The server's version as it reports it (``15.18 (Debian 15.18-0+deb12u1)``)."""
        return self.run(SUPERUSER, "SHOW server_version;").strip()

    def report(self, services: Sequence[str]) -> list[tuple[str, str]]:
        """(service, what its database holds), for `./deploy-all.sh status`."""
        names = {service: role_name(service) for service in services}
        listed = ",".join(f"'{name}'" for name in names.values()) or "NULL"
        query = f"SELECT datname FROM pg_database WHERE datname IN ({listed});"
        existing = set(self.run(SUPERUSER, query).split())
        rows = []
        for service, name in names.items():
            if name not in existing:
                rows.append((service, f"database {name} missing (`up` creates it)"))
                continue
            try:
                found = self.run(name, REPORT_SQL).strip()
            except ToolError as error:  # a table the chassis has not finished, say
                found = f"outbox backlog unreadable: {str(error).splitlines()[-1]}"
            rows.append((service, f"database {name} ({found})"))
        return rows
