"""psql as a service connects to PostgreSQL: with its DSN, the password in the child's
environment (libpq's PG* variables), never on its command line."""

from __future__ import annotations

import os
import subprocess
import urllib.parse

from platform_native.servers.postgres import BIN_DIR


def psql(dsn: str, sql: str) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` as the DSN's role in its database; rows only, stop at the first error."""
    parts = urllib.parse.urlsplit(dsn)
    env = {
        **os.environ,
        "PGHOST": parts.hostname or "",
        "PGPORT": str(parts.port),
        "PGUSER": parts.username or "",
        "PGPASSWORD": parts.password or "",
        "PGDATABASE": parts.path.lstrip("/"),
    }
    command = [str(BIN_DIR / "psql"), "--no-psqlrc", "--tuples-only", "--no-align"]
    command += ["--set=ON_ERROR_STOP=1", f"--command={sql}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
