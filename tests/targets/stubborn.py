"""A service that never lets go at shutdown: FastAPI + a raw asyncpg pool whose lifespan awaits
``pool.close()`` with no timeout while a route has leaked connections (asyncpg's close waits for
every connection to be released, so uvicorn never finishes its shutdown).

    python -m tests.targets.stubborn --port PORT --variant leaky|correct   (DATABASE_URL)

``leaky``: ``GET /take`` acquires a connection and never releases it. ``correct``: the lifespan
closes the pool with ``asyncio.wait_for(..., 2)`` and then terminates what is left.
``GET /items`` is an ordinary query in both. ``GET /session-items`` is the same query behind a
session that expires ``EXPIRES_AFTER`` seconds after start (then 401): a load that starts failing
mid-run for a reason that has nothing to do with connections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

APP_NAME = "tgt-stubborn"
EXPIRES_AFTER = float(os.environ.get("EXPIRES_AFTER", "8"))


def make_app(variant: str, dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=4, server_settings={"application_name": APP_NAME}
        )
        app.state.taken = []
        try:
            yield
        finally:
            if variant == "leaky":
                await app.state.pool.close()  # waits for the leaked connections: forever
            else:
                try:
                    await asyncio.wait_for(app.state.pool.close(), 2)
                except TimeoutError:
                    app.state.pool.terminate()

    app = FastAPI(lifespan=lifespan)

    @app.get("/items")
    async def items() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            return {"n": await conn.fetchval("SELECT count(*) FROM pg_class")}

    started = time.monotonic()

    @app.get("/session-items")
    async def session_items() -> JSONResponse:
        if time.monotonic() - started > EXPIRES_AFTER:
            return JSONResponse({"error": "session expired"}, status_code=401)
        async with app.state.pool.acquire() as conn:
            return JSONResponse({"n": await conn.fetchval("SELECT count(*) FROM pg_class")})

    @app.get("/take")
    async def take() -> dict[str, int]:
        if variant == "leaky" and len(app.state.taken) < 2:
            conn = await app.state.pool.acquire()
            await conn.fetchval("SELECT 'taken and kept'")
            app.state.taken.append(conn)
        return {"taken": len(app.state.taken)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "setup"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--variant", choices=["leaky", "correct"], default="leaky")
    args = parser.parse_args()
    if args.command == "setup":
        return
    uvicorn.run(
        make_app(args.variant, os.environ["DATABASE_URL"]), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
