"""Each service's PostgreSQL database, for the services that declare ``database = "postgres"``.

Natively the server is the one `platform_native up` started (its record in state.json)
and a service's DSN file, ``<state>/infra/postgres/secrets/<role>.url``, is what it gets
as DATABASE_URL_FILE. With Docker the server is Compose's ``postgres`` service, reached
through ``docker compose exec`` (psql as the container's ``postgres`` user on its socket,
peer authentication: the superuser password stays in .env); the DSN files, with the
address the services' network knows (``postgres:5432``), go to ``<state>/postgres/``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from platform_deploy.discovery import discover
from platform_native.databases import Databases, psql_runner
from platform_native.servers.postgres import databases_of
from platform_native.services import ServiceInfo

KIND = "postgres"  # the one kind of database the platform runs
COMPOSE_ADDRESS = "postgres:5432"
# The user the services' images run as (the template's Dockerfile: `USER 10001`). A
# Compose secret from a file is a bind mount that keeps the host file's owner and mode
# (docker/compose#9648), so the 0600 DSN file is handed to that uid.
SERVICE_UID = 10001


class NoDatabaseServer(RuntimeError):
    """PostgreSQL is not running (or not recorded); the message says what to do."""


def declared(services_dir: Path) -> list[ServiceInfo]:
    """The services that declare a database; any kind but ``postgres`` is an error."""
    found = [info for info in discover(services_dir) if info.database]
    unknown = [f"{info.name}: {info.database!r}" for info in found if info.database != KIND]
    if unknown:
        raise ValueError(f'only database = "{KIND}" is supported, not {", ".join(unknown)}')
    return found


def native(state_dir: Path) -> Databases:
    """The databases on the native server `platform_native up` recorded."""
    try:
        servers = json.loads((state_dir / "infra" / "state.json").read_text())["servers"]
        record = servers["postgres"]
    except (OSError, KeyError) as error:
        raise NoDatabaseServer(
            f"no native PostgreSQL recorded ({error}): ./deploy-all.sh --native up"
        ) from error
    return databases_of(Path(record["workdir"]), int(record["ports"]["postgres"]))


def compose(command: str, state_dir: Path) -> Databases:
    """The databases on Compose's ``postgres`` service; ``command`` is `docker compose ...`."""
    psql = [*shlex.split(command), "exec", "-T", "postgres", "psql"]
    return Databases(psql_runner(psql), compose_secrets(state_dir), COMPOSE_ADDRESS, SERVICE_UID)


def compose_secrets(state_dir: Path) -> Path:
    """Where the Compose services' DSN files are (each mounted as a Compose secret)."""
    return state_dir / "postgres"


def ensure(databases: Databases, services_dir: Path) -> list[str]:
    """Create every declared service's role and database; a line each (no secret in it)."""
    lines = []
    for info in declared(services_dir):
        databases.ensure(info.name)
        lines.append(f"{info.name}: its database is ready (DSN in {databases.url_file(info.name)})")
    return lines or ['no service declares database = "postgres"']


def report(databases: Databases, services_dir: Path, address: str) -> list[str]:
    """The server, then each declared service's database and its outbox backlog."""
    lines = [f"PostgreSQL {databases.server_version()} at {address}"]
    rows = databases.report([info.name for info in declared(services_dir)])
    width = max((len(service) for service, _ in rows), default=0)
    lines += [f"  {service:<{width}}  {found}" for service, found in rows]
    if not rows:
        lines.append('  (no service declares database = "postgres")')
    return lines
