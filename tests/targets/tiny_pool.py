"""A bare ASGI callable (no framework) with an asyncpg pool too small for its load.

The pool has ``max_size`` 2 (``TINY_POOL_MAX`` overrides) and every request holds its
connection for ``pg_sleep(0.1)``: under 20 users, requests queue in ``pool.acquire()`` for
most of their time, every connection is ``active``, and nothing is left behind once the load
stops. That is a small pool, not a leak. With ``--pool-view`` the app serves
``drainwatch.instrument``'s pool view at ``/_drainwatch/pool`` from its own ASGI code (the one
opt-in import of drainwatch among the targets), so drainwatch can count the waits.

Routes
    GET /                   no database
    GET /work               ``async with pool.acquire()``, ``SELECT pg_sleep(0.1)``
    GET /fail               a query, then a 500

The leaky variant plants its leak in ``/fail``: ``conn = await pool.acquire()``, the query,
then the 500 before ``release``; two such requests and the pool is gone. The correct variant
releases first.

    python -m tests.targets.tiny_pool --port 8083 --variant correct [--pool-view]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import uvicorn

APP_NAME = "tgt-tiny-pool"
WORK_SQL = "SELECT pg_sleep(0.1)"

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class TinyPoolApp:
    """The whole service: a lifespan that owns the pool, and three routes."""

    def __init__(self, dsn: str, variant: str, pool_max: int, pool_view: bool) -> None:
        self.dsn, self.variant, self.pool_max, self.pool_view = dsn, variant, pool_max, pool_view
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            status, body = await self.route(scope["path"])
            await send(
                {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.pool_max, server_settings={"application_name": APP_NAME}
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def route(self, path: str) -> tuple[int, Any]:
        assert self.pool is not None
        if path == "/":
            return 200, {"status": "ok"}
        if path == "/work":
            async with self.pool.acquire() as conn:
                await conn.execute(WORK_SQL)
            return 200, {"ok": 1}
        if path == "/fail":
            return await self.fail()
        if path == "/_drainwatch/pool" and self.pool_view:
            from drainwatch.instrument import pool_view

            return 200, pool_view({"asyncpg": self.pool})
        return 404, {"error": "not found"}

    async def fail(self) -> tuple[int, Any]:
        assert self.pool is not None
        if self.variant == "leaky":
            conn = await self.pool.acquire()
            await conn.execute("SELECT 1")
            return 500, {"error": "the renderer failed"}  # the connection is never released
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT 1")
        return 500, {"error": "the renderer failed"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.targets.tiny_pool")
    parser.add_argument("command", nargs="?", choices=["setup"])
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--variant", choices=["leaky", "correct"], default="correct")
    parser.add_argument("--pool-view", action="store_true")
    args = parser.parse_args()
    if args.command == "setup":
        return  # no schema: pg_sleep needs none
    logging.basicConfig(level=logging.WARNING)
    app: Any = TinyPoolApp(
        os.environ["DATABASE_URL"], args.variant, int(os.environ.get("TINY_POOL_MAX", "2")), args.pool_view
    )
    if args.pool_view:  # each checkout then knows the request that made it
        from drainwatch.instrument import RequestContext

        app = RequestContext(app)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
