"""The diagnosis in the words of the stack the service imported (pure).

A Flask service on psycopg2 told to write ``async with session_factory()`` learns nothing. The
stack is the distributions its processes imported (``run.json`` ``target.versions``, read by
the bootstrap); each pattern's cause and fix come from the first library of ``PRIORITY`` it
has words for, the one closest to the code a team writes. Without a stack (the demo, a
service given by URL) the diagnosis keeps its general words.
"""

from __future__ import annotations

from collections.abc import Iterable

# From the layer a team writes its code against to the driver underneath.
PRIORITY = ("django", "databases", "sqlalchemy", "psycopg-pool", "asyncpg", "psycopg2", "psycopg")
_ALIASES = {"psycopg2-binary": "psycopg2", "psycopg-binary": "psycopg", "psycopg-c": "psycopg"}

# pattern -> library -> (likely cause, fix)
WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "idle_in_transaction": {
        "django": (
            "a transaction left open: work outside transaction.atomic() on a connection Django never closes "
            "(a thread or task of your own, or a request under ASGI with CONN_MAX_AGE > 0)",
            "wrap the work in transaction.atomic(); call close_old_connections() when a thread of your own is done",
        ),
        "databases": (
            "a transaction begun and never committed or rolled back on an error path",
            "async with database.transaction(): ... (it commits, or rolls back on an exception)",
        ),
        "sqlalchemy": (
            "a commit or rollback missing on an error path: a Session closed after the work instead of in "
            "finally, or a yield dependency without try/finally",
            "async with session_factory() as session, session.begin(): ... (with Session(engine) as session, "
            "session.begin(): in sync code); put the yield of a dependency inside try/finally",
        ),
        "psycopg-pool": (
            "a connection given back mid-transaction, or kept out of the pool, on an error path",
            "with pool.connection() as conn: ... (async with for AsyncConnectionPool): it commits, or rolls back "
            "on an exception, and gives the connection back",
        ),
        "asyncpg": (
            "a transaction started with conn.execute('BEGIN') or tx.start() and never ended on an error path",
            "async with pool.acquire() as conn, conn.transaction(): ...",
        ),
        "psycopg2": (
            "a commit or rollback missing on an error path: psycopg2 begins a transaction at the first statement "
            "and keeps it until conn.commit() or conn.rollback()",
            "with conn: ... (commits, or rolls back on an exception); conn.rollback() before putconn() in finally",
        ),
        "psycopg": (
            "a commit or rollback missing on an error path: psycopg begins a transaction at the first statement",
            "with conn.transaction(): ..., or autocommit=True for connections that only read",
        ),
    },
    "per_request": {
        "django": (
            "Django keeps a connection per thread while CONN_MAX_AGE > 0, and under ASGI every request runs in "
            "a thread of its own that never reuses it",
            "CONN_MAX_AGE = 0 under ASGI, or Django 5.1+'s pooled backend (OPTIONS = {'pool': True}); "
            "close_old_connections() in threads of your own",
        ),
        "sqlalchemy": (
            "an engine or Session made per request and never closed (each engine is a pool of its own)",
            "create the engine once at start-up; with Session(engine) as session: ... per request",
        ),
        "psycopg2": (
            "psycopg2.connect() per request without close(), or ThreadedConnectionPool.getconn() without putconn()",
            "conn = pool.getconn(); try: ... finally: pool.putconn(conn)",
        ),
        "psycopg": (
            "psycopg.connect() per request without close()",
            "with psycopg.connect(dsn) as conn: ..., or one psycopg_pool.ConnectionPool for the service",
        ),
        "asyncpg": (
            "asyncpg.connect() per request without close()",
            "one pool for the service (asyncpg.create_pool at start-up); async with pool.acquire() as conn: ...",
        ),
    },
    "held": {
        "databases": (
            "a connection taken for the request and never released on an error or a cancellation",
            "async with database.connection() as conn: ...; re-raise CancelledError",
        ),
        "sqlalchemy": (
            "a release that never happened: a Session or connection closed after the work instead of in finally, "
            "or cleanup that awaits while the task is being cancelled (client disconnect, deadline)",
            "async with engine.connect() as conn / async with session_factory() as session: ...; no other await "
            "before the close in cleanup; re-raise CancelledError",
        ),
        "psycopg-pool": (
            "a connection taken with getconn() and not given back on an error path",
            "with pool.connection() as conn: ... (async with for AsyncConnectionPool) instead of getconn()/putconn()",
        ),
        "psycopg2": (
            "getconn() without putconn() on an error path",
            "conn = pool.getconn(); try: ... finally: pool.putconn(conn)",
        ),
    },
}

# How requests fail fast instead of queueing forever, by library (the guardrails' second half).
TIMEOUTS = {
    "django": "a statement_timeout in DATABASES['default']['OPTIONS'] and, with its pool, OPTIONS['pool'] = {'timeout': 5}",
    "databases": "a command timeout on the Database (Database(url, command_timeout=...))",
    "sqlalchemy": "SQLAlchemy's pool_timeout",
    "psycopg-pool": "ConnectionPool(timeout=...)",
    "asyncpg": "pool.acquire(timeout=...)",
    "psycopg2": "a statement_timeout (psycopg2's pools raise PoolError when empty: count them)",
    "psycopg": "a statement_timeout",
}


def libraries(stack: Iterable[str]) -> list[str]:
    """The libraries of ``PRIORITY`` in ``stack`` (distribution names), closest to the app first."""
    names = {_ALIASES.get(n, n) for n in (name.lower().replace("_", "-") for name in stack)}
    return [library for library in PRIORITY if library in names]


def words(pattern: str, stack: Iterable[str]) -> tuple[str, str] | None:
    """(cause, fix) of ``pattern`` for the first library of the stack that has words for it."""
    by_library = WORDS.get(pattern, {})
    return next((by_library[library] for library in libraries(stack) if library in by_library), None)


def timeouts(stack: Iterable[str]) -> str | None:
    """The pool or statement timeouts of the stack's libraries, or None without a known one."""
    found = [TIMEOUTS[library] for library in libraries(stack) if library in TIMEOUTS]
    return ", ".join(found[:2]) or None
