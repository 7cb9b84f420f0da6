"""PostgreSQL 15, Debian's binaries, as the platform's database server.

Not built from a registry: Debian's ``postgresql-15`` package is the real server at the
Compose image's major version (/usr/lib/postgresql/15/bin; :func:`ensure_postgres`
installs it with apt-get when run as root, and otherwise says how). A real server:
initdb, a data directory that outlives restart(), fsync and the rest at their defaults.

Access: only TCP on 127.0.0.1 at a free port, no unix socket, and every connection
authenticates with SCRAM-SHA-256 (pg_hba.conf): the superuser with a password generated
at initdb, each service's role only to the database of its own name (``samerole``: also
the short-lived roles OpenBao makes as members of a service's role, platform_deploy.openbao).
Peer or trust on a socket would not do: the services run as the platform's own OS user,
so only a password per role tells them apart. The passwords and each service's DSN stay
in ``<workdir>/secrets/`` (0700, files 0600), never printed (platform_native.databases).

PostgreSQL refuses to run as root. Started by root (``make test`` and CI are), initdb and
the server run as the ``postgres`` account Debian's package creates (made with ``useradd
--system`` if it is missing), without supplementary groups. That account must reach its
data directory, which a work directory under /root or pytest's 0700 temporary folders
denies it: then the data lives in a private folder made in /var/tmp, ``<workdir>/server``
links to it, and :func:`remove_data` deletes both (``servers.running`` deletes that
folder on exit, since the tests' work directories are thrown away without it).

The postmaster runs in the foreground, in its own process group like every server here,
not through ``pg_ctl start``, which would setsid() it out of the group that ``down`` and
the tests stop; it stops on SIGINT, PostgreSQL's fast shutdown (``pg_ctl stop -m fast``).
"""

from __future__ import annotations

import functools
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from platform_native import apt, versions
from platform_native.databases import SUPERUSER, Databases, psql_runner, write_secret
from platform_native.processes import HOST, Account, free_ports, run_as
from platform_native.servers.base import Server
from platform_native.tools import ToolError

BIN_DIR = Path(f"/usr/lib/postgresql/{versions.POSTGRES_MAJOR}/bin")
APT_PACKAGE = f"postgresql-{versions.POSTGRES_MAJOR}"
TOOLS = ("initdb", "postgres", "psql")
ACCOUNT = "postgres"  # the system user Debian's package creates
OUTSIDE = Path("/var/tmp")  # world-traversable, kept across reboots
# Loopback TCP only, SCRAM only: the superuser anywhere, a service (or a member of its
# role: OpenBao's short-lived credentials) in its own database.
PG_HBA = f"""\
# Written by platform_native (servers/postgres.py). No unix socket is open.
host  all       {SUPERUSER}  127.0.0.1/32  scram-sha-256
host  samerole  all       127.0.0.1/32  scram-sha-256
"""


def ensure_postgres(bin_dir: Path = BIN_DIR) -> Path:
    """The folder with initdb, postgres and psql; installs Debian's package if root can."""
    if not all((bin_dir / tool).is_file() for tool in TOOLS):
        try:
            apt.install([APT_PACKAGE])
        except apt.AptError as error:
            raise ToolError(
                f"PostgreSQL {versions.POSTGRES_MAJOR} is not installed ({bin_dir}/postgres "
                f"is missing): apt-get install {APT_PACKAGE}\n({error})"
            ) from error
    return bin_dir


@functools.cache
def server_account() -> Account | None:
    """The account the server runs as: None unless we are root (see the module)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(ACCOUNT)
    except KeyError:
        useradd = ["useradd", "--system", "--user-group", "--no-create-home"]
        useradd += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", ACCOUNT]
        subprocess.run(useradd, check=True, capture_output=True, timeout=60)
        entry = pwd.getpwnam(ACCOUNT)
    return Account(ACCOUNT, entry.pw_uid, entry.pw_gid)


def reachable(path: Path, account: Account) -> bool:
    """True if ``account`` (no supplementary groups) may traverse every folder to ``path``."""
    for folder in (*reversed(path.parents), path):
        info = folder.stat()
        if info.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def remove_outside(workdir: Path) -> None:
    """Delete a data folder kept outside ``workdir`` (in OUTSIDE), and the link to it."""
    server_dir = workdir / "server"
    if server_dir.is_symlink():
        shutil.rmtree(server_dir.resolve(), ignore_errors=True)
        server_dir.unlink()


def remove_data(workdir: Path) -> None:
    """Delete a server's data and secrets, including a data folder outside ``workdir``."""
    remove_outside(workdir)
    shutil.rmtree(workdir / "server", ignore_errors=True)
    shutil.rmtree(workdir / "secrets", ignore_errors=True)


def environment() -> dict[str, str]:
    """Ours without PG* variables: PGDATA, PGPORT and the like would override our options."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def databases_of(workdir: Path, port: int, bin_dir: Path = BIN_DIR) -> Databases:
    """The services' databases on the server of ``workdir`` (also from another process)."""
    env = environment() | {
        "PGPASSFILE": str(workdir / "secrets" / "pgpass"),
        "PGCONNECT_TIMEOUT": "10",
    }
    psql = [str(bin_dir / "psql"), f"--host={HOST}", f"--port={port}"]
    return Databases(psql_runner(psql, env), workdir / "secrets", f"{HOST}:{port}")


class Postgres(Server):
    """PostgreSQL on 127.0.0.1, SCRAM passwords only, data in the work directory."""

    name = "postgres"
    version = versions.POSTGRES_MAJOR
    leader_stop_signal = signal.SIGINT

    def __init__(
        self,
        workdir: Path | str,
        *,
        bin_dir: Path | None = None,
        detach: bool = False,
    ) -> None:
        super().__init__(workdir, detach=detach)
        self.bin_dir = bin_dir or self.build()
        (self.port,) = free_ports(1)
        self.server_dir = self.workdir / "server"  # the account's own; maybe a link (above)
        self.secrets_dir = self.workdir / "secrets"
        self.password_file = self.secrets_dir / f"{SUPERUSER}.password"

    @classmethod
    def build(cls) -> Path:
        return ensure_postgres()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """PGDATA, as a path the server's account can reach (links resolved)."""
        return self.server_dir.resolve() / "data"

    def ports(self) -> dict[str, int]:
        return {"postgres": self.port}

    def addresses(self) -> dict[str, str]:
        return {
            "address": self.address,
            "url": f"postgresql://{self.address}",
            "superuser_password_file": str(self.password_file),
        }

    def compose_addresses(self) -> dict[str, str]:
        return {"postgres:5432": self.address}

    def account(self) -> Account | None:
        return server_account()

    def working_directory(self) -> Path:
        return self.server_dir.resolve()

    def env(self) -> dict[str, str]:
        return environment()

    def databases(self) -> Databases:
        """Create and report the services' databases on this server."""
        return databases_of(self.workdir, self.port, self.bin_dir)

    def ensure_database(self, service: str) -> str:
        """Create ``service``'s role and database (idempotent); return its DSN."""
        return self.databases().ensure(service)

    def remove_data(self) -> None:
        """Delete the data and the secrets (stopped first); the next start runs initdb."""
        self.stop()
        remove_data(self.workdir)

    def remove_outside(self) -> None:
        """Delete the data kept in OUTSIDE, if any (stopped first): deleting the work
        directory alone would leave it there."""
        self.stop()
        remove_outside(self.workdir)

    # -- lifecycle

    def _make_server_dir(self, account: Account | None) -> None:
        if self.server_dir.exists():
            return
        if account is None or reachable(self.workdir, account):
            self.server_dir.mkdir(mode=0o700)
            target = self.server_dir
        else:
            target = Path(tempfile.mkdtemp(prefix="event-platform-postgres-", dir=OUTSIDE))
            self.server_dir.symlink_to(target)
        if account is not None:
            os.chown(target, account.uid, account.gid, follow_symlinks=False)

    def _as_account(self, path: Path, text: str) -> None:
        """Write a file only the server's account reads."""
        write_secret(path, text)
        account = self.account()
        if account is not None:
            os.chown(path, account.uid, account.gid, follow_symlinks=False)

    def configure(self) -> None:
        """initdb once (a superuser password, SCRAM), then our pg_hba.conf."""
        account = self.account()
        self._make_server_dir(account)
        if (self.data_dir / "PG_VERSION").exists():
            return
        password = secrets.token_urlsafe(24)
        write_secret(self.password_file, password + "\n")
        write_secret(self.secrets_dir / "pgpass", f"{HOST}:*:*:{SUPERUSER}:{password}\n")
        pwfile = self.server_dir.resolve() / "initdb.password"  # readable by the account
        self._as_account(pwfile, password + "\n")
        initdb = [str(self.bin_dir / "initdb"), f"--pgdata={self.data_dir}"]
        initdb += [f"--username={SUPERUSER}", f"--pwfile={pwfile}", "--auth=scram-sha-256"]
        initdb += ["--encoding=UTF8", "--no-locale", "--no-instructions"]
        shutil.rmtree(self.data_dir, ignore_errors=True)  # what a failed initdb left
        try:
            result = subprocess.run(
                initdb,
                env=self.env(),
                cwd=self.working_directory(),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                **run_as(account),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ToolError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        self._as_account(self.data_dir / "pg_hba.conf", PG_HBA)

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": "",  # TCP only (see the module docstring)
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options]

    def health(self) -> bool:
        try:
            answer = self.databases().run(SUPERUSER, "SELECT 1;")
        except ToolError:
            return False
        return answer.strip() == "1"
