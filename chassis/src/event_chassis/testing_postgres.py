"""A throwaway PostgreSQL for tests, from the machine's server binaries.

    with throwaway_postgres() as server:   # postgresql://postgres@127.0.0.1:<port>/postgres
        url = await new_database(server)    # a database of its own for each test

initdb and pg_ctl in a temporary folder, on 127.0.0.1 and a free port, stopped and
removed at the end. PostgreSQL refuses to run as root, and CI runs tests as root: then
the server runs as the unprivileged `postgres` user (Debian's server package creates
it) or `nobody`. pytest-postgresql cannot do that, hence this. Binaries are looked for
in PG_BIN_DIR, on PATH, then in Debian's /usr/lib/postgresql/<major>/bin.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEBIAN = Path("/usr/lib/postgresql")


def bin_dir() -> Path:
    """Where initdb and pg_ctl are; a clear error if nowhere."""
    candidates = [os.environ.get("PG_BIN_DIR", "")]
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).resolve().parent))
    candidates += [str(path) for path in sorted(DEBIAN.glob("*/bin"), reverse=True)]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise FileNotFoundError(
        "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
        "apt-get install postgresql-15, or set PG_BIN_DIR"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(folder: Path) -> list[str]:
    """The command prefix that runs the server unprivileged when we are root."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        for path in (folder, *folder.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    raise RuntimeError(
        "running as root and no unprivileged user (postgres, nobody) to run PostgreSQL"
    )


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A new PostgreSQL server for the block; its superuser DSN."""
    binaries = bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="throwaway-postgres-"))
    data, port = folder / "data", free_port()
    folder.chmod(0o755)
    prefix = _as_server_user(folder)

    def run(*command: str) -> None:
        # Our own commands, built above from the binaries folder: no outside input.
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)  # noqa: S603

    try:
        run(
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(
            str(binaries / "pg_ctl"),
            "start",
            "-D",
            str(data),
            "-w",
            "-o",
            options,
            "-l",
            str(folder / "log"),
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(binaries / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w")
        shutil.rmtree(folder, ignore_errors=True)


async def new_database(server: str) -> str:
    """A new, empty database on `server` (a superuser DSN); its DSN."""
    import asyncpg

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.rsplit("/", 1)[0] + f"/{name}"
