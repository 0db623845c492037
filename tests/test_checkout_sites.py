"""Where each connection was taken: the pool view's checkout records, on a real SQLAlchemy pool and PostgreSQL."""

from __future__ import annotations

import asyncio
import inspect

import psycopg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from drainwatch.instrument import pool_view
from drainwatch.judge.attribution import with_checkouts
from drainwatch.provision.postgres import Database


def _take(engine: sa.Engine) -> tuple[sa.Connection, int]:
    conn = engine.connect()  # the line the record must name
    conn.execute(sa.text("SELECT 1"))
    return conn, inspect.currentframe().f_lineno - 2  # type: ignore[union-attr]


def test_a_connection_never_given_back_is_named_by_the_line_that_took_it(pg: Database) -> None:
    engine = sa.create_engine(pg.dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert pool_view({"db": engine})["checkouts"] == []  # the first view installs the recording
        conn, line = _take(engine)
        pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        (taken,) = pool_view({"db": engine})["checkouts"]
        assert taken["pid"] == pid
        assert taken["stack"][0] == f"tests/test_checkout_sites.py:{line} in _take()"
        assert "test_a_connection_never_given_back" in taken["stack"][1]
        with psycopg.connect(pg.dsn, autocommit=True) as watch:  # what drainwatch's snapshot row has
            row = {"pid": watch.execute("SELECT %s::int", (pid,)).fetchone()[0], "kind": "held"}
        (joined,) = with_checkouts([row], pool_view({"db": engine}))
        assert joined["taken_at"] == taken["stack"][0] and joined["taken_ago_s"] >= 0
        conn.close()  # given back: no longer recorded
        assert pool_view({"db": engine})["checkouts"] == []
    finally:
        engine.dispose()


def test_the_async_api_names_the_coroutine_that_awaited_the_checkout(pg: Database) -> None:
    async def handler(engine: object) -> tuple[object, int]:
        conn = await engine.connect()  # type: ignore[attr-defined]
        return conn, inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]

    async def scenario() -> tuple[list[dict], int]:
        engine = create_async_engine(pg.dsn.replace("postgresql://", "postgresql+asyncpg://"))
        try:
            pool_view({"db": engine})
            conn, line = await handler(engine)
            found = pool_view({"db": engine})["checkouts"]
            await conn.close()  # type: ignore[attr-defined]
            return found, line
        finally:
            await engine.dispose()

    found, line = asyncio.run(scenario())
    assert [c["stack"][0] for c in found] == [f"tests/test_checkout_sites.py:{line} in handler()"]


def test_asyncpg_names_the_handler_that_acquired_and_forgets_what_it_released(pg: Database) -> None:
    import asyncpg

    async def leaky(pool: asyncpg.Pool) -> tuple[object, int]:
        conn = await pool.acquire()  # never released: the line the record must name
        return conn, inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]

    async def correct(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await conn.execute("SELECT 1")

    async def scenario() -> tuple[list[dict], list[dict], int, int]:
        async with asyncpg.create_pool(pg.dsn, min_size=1, max_size=3) as pool:
            assert pool_view({"raw": pool})["checkouts"] == []
            await correct(pool)
            conn, line = await leaky(pool)
            held, pid = pool_view({"raw": pool})["checkouts"], conn.get_server_pid()  # type: ignore[attr-defined]
            await pool.release(conn)
            return held, pool_view({"raw": pool})["checkouts"], line, pid

    held, after, line, pid = asyncio.run(scenario())
    assert [(c["stack"][0], c["pid"]) for c in held] == [(f"tests/test_checkout_sites.py:{line} in leaky()", pid)]
    assert after == []


def test_psycopg_pool_sync_and_async_name_the_getconn(pg: Database) -> None:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    def take(pool: ConnectionPool) -> tuple[psycopg.Connection, int]:
        conn = pool.getconn()  # the sync line
        return conn, inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]

    with ConnectionPool(pg.dsn, min_size=1, max_size=2, open=True) as pool:
        pool_view({"psycopg": pool})
        with pool.connection() as conn:  # lent and given back through the context manager
            conn.execute("SELECT 1")
        assert pool_view({"psycopg": pool})["checkouts"] == []
        conn, line = take(pool)
        (taken,) = pool_view({"psycopg": pool})["checkouts"]
        assert taken["stack"][0] == f"tests/test_checkout_sites.py:{line} in take()"
        assert taken["pid"] == conn.info.backend_pid
        pool.putconn(conn)
        assert pool_view({"psycopg": pool})["checkouts"] == []

    async def handler(pool: AsyncConnectionPool) -> int:
        await pool.getconn()  # dropped without putconn: the pool is short of it for good
        return inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]

    async def scenario() -> tuple[list[dict], int]:
        async with AsyncConnectionPool(pg.dsn, min_size=1, max_size=2, open=False) as pool:
            pool_view({"psycopg": pool})
            line = await handler(pool)
            import gc

            gc.collect()  # the connection object is gone; the record must stay
            return pool_view({"psycopg": pool})["checkouts"], line

    found, line = asyncio.run(scenario())
    assert [c["stack"][0] for c in found] == [f"tests/test_checkout_sites.py:{line} in handler()"]


def test_tasks_waiting_for_a_dry_pool_are_shown_where_they_wait(pg: Database) -> None:
    """What explains a hung service: its handlers queued in acquire behind a leaked connection."""
    import asyncpg

    async def waiter(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:  # the line every waiting task stands on
            await conn.execute("SELECT 1")

    async def scenario() -> tuple[list[dict], int]:
        async with asyncpg.create_pool(pg.dsn, min_size=1, max_size=1) as pool:
            leaked = await pool.acquire()
            line = inspect.getsourcelines(waiter)[1] + 1
            tasks = [asyncio.create_task(waiter(pool)) for _ in range(3)]
            await asyncio.sleep(0.2)
            view = pool_view({"raw": pool})
            await pool.release(leaked)
            await asyncio.gather(*tasks)
            return view["waiting"], line

    found, line = asyncio.run(scenario())
    at_acquire = [g for g in found if g["at"] == f"tests/test_checkout_sites.py:{line} in waiter()"]
    assert [(g["what"], g["count"]) for g in at_acquire] == [("task", 3)], found
    assert at_acquire[0]["waiting_in"].startswith("asyncpg/pool.py:"), at_acquire


def test_a_sync_handler_in_a_thread_is_shown_where_it_waits(pg: Database) -> None:
    import threading

    release = threading.Event()

    def handler() -> None:
        release.wait(10)  # the line the thread stands on

    line = inspect.getsourcelines(handler)[1] + 1
    worker = threading.Thread(target=handler)
    worker.start()
    try:
        found = pool_view({})["waiting"]
    finally:
        release.set()
        worker.join()
    mine = [g for g in found if g["at"] == f"tests/test_checkout_sites.py:{line} in handler()"]
    assert [(g["what"], g["count"]) for g in mine] == [("thread", 1)], found
    assert mine[0]["waiting_in"] == mine[0]["at"]  # Event.wait is the standard library's: the handler is where it waits


def test_a_connection_left_to_the_garbage_collector_is_counted_where_it_was_taken(pg: Database) -> None:
    """SQLAlchemy's "garbage collector is trying to clean up non-checked-in connection", with its line."""
    import gc
    import warnings

    engine = sa.create_engine(pg.dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        pool_view({"db": engine})
        for _ in range(2):
            conn, line = _take(engine)
            del conn  # dropped without close()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SQLAlchemy's own warning about it
                gc.collect()
        view = pool_view({"db": engine})
        assert view["checkouts"] == []  # given back by the collector: no longer out
        assert view["collected"] == [
            {"stack": [f"tests/test_checkout_sites.py:{line} in _take()", view["collected"][0]["stack"][1]], "count": 2}
        ]
        assert "test_a_connection_left_to_the_garbage_collector" in view["collected"][0]["stack"][1]
        with engine.connect() as ok:  # closed: never counted
            ok.execute(sa.text("SELECT 1"))
        assert pool_view({"db": engine})["collected"][0]["count"] == 2
    finally:
        engine.dispose()


def test_the_request_that_took_a_connection_is_recorded_with_it(pg: Database) -> None:
    """RequestContext around an ASGI app: each checkout carries its request, no SQL tag needed."""
    import asyncpg

    from drainwatch.instrument import RequestContext

    async def scenario() -> list[dict]:
        async with asyncpg.create_pool(pg.dsn, min_size=1, max_size=2) as pool:
            kept: list[object] = []

            async def app(scope: dict, receive: object, send: object) -> None:
                kept.append(await pool.acquire())  # never released

            pool_view({"raw": pool})
            headers = [(b"x-request-id", b"rid-42"), (b"x-drainwatch-scenario", b"error"), (b"accept", b"*/*")]
            await RequestContext(app)(
                {"type": "http", "method": "POST", "path": "/orders", "headers": headers}, None, None
            )
            found = pool_view({"raw": pool})["checkouts"]
            for conn in kept:
                await pool.release(conn)
            return found

    (taken,) = asyncio.run(scenario())
    assert taken["request"] == {"method": "POST", "path": "/orders", "id": "rid-42", "scenario": "error"}
    row = {"pid": taken["pid"], "kind": "held", "likely": "steady GET /items"}  # timing guessed wrong
    (joined,) = with_checkouts([row], {"checkouts": [taken]})
    assert (joined["request_id"], joined["scenario"], joined["route"], joined["likely"]) == (
        "rid-42",
        "error",
        "POST /orders",
        "error POST /orders",
    )
