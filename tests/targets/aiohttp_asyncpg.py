"""An inventory API on aiohttp.web with a raw asyncpg pool (min 2, max 6).

Nothing here resembles the drainwatch demo: no FastAPI, no SQLAlchemy, no streaming, every
database route behind a bearer token, and an N+1 list endpoint whose connection sits ``idle``
with application SQL between its queries while the request is still running.

Routes
    GET /healthz            no database
    GET /api/items          needs ``Authorization: Bearer secret-token`` (401 otherwise);
                            one list query, then one query per row, 20 ms apart (N+1)
    GET /api/report         a summary query, then the renderer fails: always 500
    GET /api/slow?ms=300    ``pg_sleep`` inside ``async with pool.acquire()``

The leaky variant plants its leak in ``/api/report``: ``conn = await pool.acquire()``, the
query, then the 500 is raised before ``pool.release(conn)`` is reached. The connection stays
``idle`` with the report SQL as its last statement, and after six such requests every
``pool.acquire()`` waits forever (asyncpg has no default acquire timeout). The correct variant
uses ``async with pool.acquire()`` and raises the same 500 after the connection is released,
so asyncpg's reset script is the last statement of every pooled connection.

``--no-prepare`` creates the pool with ``statement_cache_size=0`` (no named server-side prepared
statements), so the service works behind PgBouncer in transaction mode, which 1.18 does not
carry them through.

Run (cwd = the repository root, database in ``DATABASE_URL``)::

    python -m tests.targets.aiohttp_asyncpg setup
    python -m tests.targets.aiohttp_asyncpg --port 8081 --variant leaky [--no-prepare]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

APP_NAME = "tgt-aiohttp-asyncpg"
TOKEN = "secret-token"
POOL_MIN, POOL_MAX = 2, 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory_items (
    id integer PRIMARY KEY,
    sku text NOT NULL,
    quantity integer NOT NULL
);
"""
REPORT_SQL = "SELECT count(*) AS n, coalesce(sum(quantity), 0) AS total FROM inventory_items"

POOL_KEY = web.AppKey("pool", asyncpg.Pool)
VARIANT_KEY = web.AppKey("variant", str)
NO_PREPARE_KEY = web.AppKey("no_prepare", bool)


async def setup_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": APP_NAME + "-setup"})
    try:
        await conn.execute(SCHEMA)
        await conn.executemany(
            "INSERT INTO inventory_items (id, sku, quantity) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            [(i, f"SKU-{i:04d}", i * 3) for i in range(1, 13)],
        )
    finally:
        await conn.close()


def require_token(request: web.Request) -> None:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        raise web.HTTPUnauthorized(text="missing or wrong bearer token")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_items(request: web.Request) -> web.Response:
    require_token(request)
    pool = request.app[POOL_KEY]
    items = []
    async with pool.acquire() as conn:
        ids = await conn.fetch("SELECT id FROM inventory_items ORDER BY id")
        for row in ids:
            await asyncio.sleep(0.02)  # e.g. a cache lookup per row: the connection idles meanwhile
            item = await conn.fetchrow("SELECT id, sku, quantity FROM inventory_items WHERE id = $1", row["id"])
            items.append(dict(item))
    return web.json_response({"items": items})


def render_report(summary: asyncpg.Record) -> dict[str, int]:
    """The broken part of the report: it always fails, with a 500."""
    raise web.HTTPInternalServerError(text=f"report renderer failed on {dict(summary)}")


async def report_leaky(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    conn = await pool.acquire()
    summary = await conn.fetchrow(REPORT_SQL)
    body = render_report(summary)  # raises: the release below is never reached
    await pool.release(conn)
    return web.json_response(body)


async def report_correct(request: web.Request) -> web.Response:
    pool = request.app[POOL_KEY]
    async with pool.acquire() as conn:
        summary = await conn.fetchrow(REPORT_SQL)
    return web.json_response(render_report(summary))  # same 500, after the release


async def slow(request: web.Request) -> web.Response:
    ms = int(request.query.get("ms", "300"))
    async with request.app[POOL_KEY].acquire() as conn:
        await conn.execute("SELECT pg_sleep($1)", ms / 1000)
    return web.json_response({"slept_ms": ms})


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"],
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        server_settings={"application_name": APP_NAME},
        **({"statement_cache_size": 0} if app[NO_PREPARE_KEY] else {}),  # behind a transaction-mode pooler
    )
    app[POOL_KEY] = pool
    yield
    try:
        # waits for every connection to come back; a leaked one never does
        await asyncio.wait_for(pool.close(), timeout=2)
    except TimeoutError:
        # the held connections' protocol futures fail unobserved when cut: keep that quiet
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        pool.terminate()


def make_app(variant: str, no_prepare: bool = False) -> web.Application:
    app = web.Application()
    app[VARIANT_KEY] = variant
    app[NO_PREPARE_KEY] = no_prepare
    app.cleanup_ctx.append(pool_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/items", list_items)
    app.router.add_get("/api/report", report_leaky if variant == "leaky" else report_correct)
    app.router.add_get("/api/slow", slow)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.targets.aiohttp_asyncpg")
    parser.add_argument("command", nargs="?", choices=["serve", "setup"], default="serve")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--variant", choices=["leaky", "correct"], default="correct")
    parser.add_argument("--no-prepare", action="store_true", help="statement_cache_size=0 (PgBouncer transaction mode)")
    args = parser.parse_args()
    if args.command == "setup":
        asyncio.run(setup_schema(os.environ["DATABASE_URL"]))
        return
    logging.basicConfig(level=logging.WARNING)
    web.run_app(
        make_app(args.variant, args.no_prepare),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=1,
    )


if __name__ == "__main__":
    main()
