"""A small target for traps the demo cannot show: a psycopg_pool app.

psycopg's pool keeps no reference to a connection it has handed out, so a connection the
app drops is closed by the garbage collector: it vanishes from pg_stat_activity while the
pool still counts it checked out. Connections are autocommit, so a pooled one shows the
app's last SQL, exactly like a leaked one would.

    python -m tests.targets.psycopg_app PORT   (DSN in DRAINWATCH_DEMO_DSN)
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from drainwatch.instrument import mount_pool_view

APP_NAME = "dw-test-psycopg"


def create_app(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            dsn,
            min_size=2,
            max_size=6,
            max_idle=5,
            timeout=2,
            open=False,
            kwargs={"autocommit": True, "application_name": APP_NAME},
        )
        await pool.open(wait=True)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close(timeout=2)

    app = FastAPI(lifespan=lifespan)
    mount_pool_view(app, lambda: {"psycopg": app.state.pool})

    @app.get("/work")
    async def work(ms: int = 0) -> dict[str, int]:
        async with app.state.pool.connection() as conn:
            await conn.execute("SELECT count(*) FROM pg_class")
            await asyncio.sleep(ms / 1000)
        return {"ok": 1}

    @app.get("/leak-gc")
    async def leak_gc() -> dict[str, int]:
        conn = await app.state.pool.getconn()
        await conn.execute("SELECT 'dropped'")
        del conn  # never put back: the pool still counts it, nobody references it
        gc.collect()
        return {"ok": 1}

    @app.get("/health/db")
    async def health_db() -> dict[str, int]:
        async with app.state.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return {"ok": 1}

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"app": APP_NAME}

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(os.environ["DRAINWATCH_DEMO_DSN"]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
    )
