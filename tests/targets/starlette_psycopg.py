"""A users-and-orders API on bare Starlette with two psycopg_pool pools, served by uvicorn.

Both pools are fixed-size (``min_size = max_size = 4``, ``timeout = 3`` s) and share one
``application_name``, so a connection count for the service never moves, leak or not:

- the *reader* pool resets every returned connection with ``DISCARD ALL`` (its ``reset``
  callback), so a pooled reader shows ``DISCARD ALL`` as its last statement;
- the *writer* pool has no reset, so a pooled writer shows whatever the application ran
  last -- here the ``COMMIT`` that ``connection()`` issues on exit (a writer never used yet
  shows an empty query).

psycopg connections are not autocommit here: every statement opens a transaction that the
pool's ``connection()`` context commits (or rolls back) on exit.

Routes
    GET  /                  no database
    GET  /users             reader pool, a plain SELECT
    POST /orders            writer pool, an INSERT; body ``{"user_id": 1, "amount": 5}``
    GET  /users/{id}        reader pool, one user; 404 when the id does not exist

The leaky variant plants its leak in ``GET /users/{id}``: ``conn = await reader.getconn()``,
the SELECT, then an early ``return`` of the 404 for a missing id without ``putconn``. The
SELECT opened a transaction, but nothing references the connection once the handler returns
(psycopg_pool keeps no reference to a connection it handed out), so CPython's refcounting
frees it at once and libpq closes the socket: the backend disappears from
``pg_stat_activity`` -- it is *not* left ``idle in transaction`` -- while the pool still
counts it as checked out. After four such requests the reader pool is empty for good: every
reader ``getconn()`` waits its 3 s timeout and the request answers 500, with zero reader
connections visible. The writer pool (``POST /orders``) keeps working. The correct variant
uses ``async with reader.connection()``.

Run (cwd = the repository root, database in ``DATABASE_URL``)::

    python -m tests.targets.starlette_psycopg setup
    python -m tests.targets.starlette_psycopg --port 8082 --variant leaky
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import uvicorn
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

APP_NAME = "tgt-starlette-psycopg"
POOL_SIZE = 4
USER_SQL = "SELECT id, email FROM shop_users WHERE id = %s"


def setup_schema(dsn: str) -> None:
    with psycopg.connect(dsn, application_name=APP_NAME + "-setup") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS shop_users (id integer PRIMARY KEY, email text NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS shop_orders (id bigserial PRIMARY KEY, user_id integer NOT NULL,"
            " amount integer NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO shop_users (id, email) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                [(i, f"user{i}@example.test") for i in range(1, 6)],
            )


async def discard_all(conn: psycopg.AsyncConnection) -> None:
    """The reader pool's reset: DISCARD ALL cannot run in a transaction, so autocommit for it."""
    await conn.set_autocommit(True)
    await conn.execute("DISCARD ALL")
    await conn.set_autocommit(False)


def make_pool(dsn: str, name: str, reset=None) -> AsyncConnectionPool:
    # DISCARD ALL also drops server-side prepared statements that psycopg still believes in
    # ("prepared statement _pg3_0 does not exist"): a pool that resets that way must not prepare.
    kwargs = {"application_name": APP_NAME, **({"prepare_threshold": None} if reset else {})}
    return AsyncConnectionPool(
        dsn,
        name=name,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        timeout=3,
        open=False,
        kwargs=kwargs,
        reset=reset,
    )


def make_app(variant: str, dsn: str) -> Starlette:
    reader = make_pool(dsn, "reader", reset=discard_all)
    writer = make_pool(dsn, "writer")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await reader.open(wait=True)
        await writer.open(wait=True)
        try:
            yield
        finally:
            await writer.close(timeout=2)
            await reader.close(timeout=2)

    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("shop api\n")

    async def list_users(request: Request) -> JSONResponse:
        async with reader.connection() as conn:
            cur = await conn.execute("SELECT id, email FROM shop_users ORDER BY id")
            rows = await cur.fetchall()
        return JSONResponse([{"id": i, "email": e} for i, e in rows])

    async def place_order(request: Request) -> JSONResponse:
        body = await request.json()
        async with writer.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO shop_orders (user_id, amount) VALUES (%s, %s) RETURNING id",
                (int(body["user_id"]), int(body["amount"])),
            )
            (order_id,) = await cur.fetchone()
        return JSONResponse({"id": order_id}, status_code=201)

    async def get_user_leaky(request: Request) -> JSONResponse:
        conn = await reader.getconn()
        cur = await conn.execute(USER_SQL, (request.path_params["id"],))
        row = await cur.fetchone()
        if row is None:
            return JSONResponse({"detail": "no such user"}, status_code=404)  # never putconn
        await reader.putconn(conn)
        return JSONResponse({"id": row[0], "email": row[1]})

    async def get_user_correct(request: Request) -> JSONResponse:
        async with reader.connection() as conn:
            cur = await conn.execute(USER_SQL, (request.path_params["id"],))
            row = await cur.fetchone()
        if row is None:
            return JSONResponse({"detail": "no such user"}, status_code=404)
        return JSONResponse({"id": row[0], "email": row[1]})

    async def pool_timeout(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "database busy"}, status_code=500)

    routes = [
        Route("/", index),
        Route("/users", list_users),
        Route("/orders", place_order, methods=["POST"]),
        Route("/users/{id:int}", get_user_leaky if variant == "leaky" else get_user_correct),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={PoolTimeout: pool_timeout})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.targets.starlette_psycopg")
    parser.add_argument("command", nargs="?", choices=["serve", "setup"], default="serve")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--variant", choices=["leaky", "correct"], default="correct")
    args = parser.parse_args()
    dsn = os.environ["DATABASE_URL"]
    if args.command == "setup":
        setup_schema(dsn)
        return
    uvicorn.run(
        make_app(args.variant, dsn),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
