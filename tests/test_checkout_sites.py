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
