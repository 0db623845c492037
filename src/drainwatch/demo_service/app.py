"""The demo service's app: lifespan-owned pools, the seed's middleware, health routes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from drainwatch.demo_service import CANCEL_ENV, DSN_ENV, MAX_OVERFLOW, POOL_SIZE, RAW_POOL_MAX, app_name, fixed, leaky
from drainwatch.demo_service.agent import PaymentDeclined
from drainwatch.demo_service.cancel import CancelOnDisconnect
from drainwatch.demo_service.context import request_id_middleware, tag
from drainwatch.instrument import mount_pool_view

log = logging.getLogger(__name__)

POOL_TIMEOUT = 5.0  # SQLAlchemy's wait for a free connection before "QueuePool limit ... reached"


def create_app(variant: str = "leaky", dsn: str | None = None, cancel_on_disconnect: bool | None = None) -> FastAPI:
    """The demo service. ``dsn`` defaults to the ``DRAINWATCH_DEMO_DSN`` environment variable;
    ``cancel_on_disconnect`` (default: ``DRAINWATCH_DEMO_CANCEL_ON_DISCONNECT=1``) adds the
    middleware that cancels plain handlers when their client hangs up."""
    if variant not in ("leaky", "fixed"):
        raise ValueError(f"unknown variant {variant!r}")
    app = FastAPI(title=f"drainwatch demo service ({variant})", lifespan=_lifespan(variant, dsn or os.environ[DSN_ENV]))
    app.middleware("http")(request_id_middleware)
    if cancel_on_disconnect if cancel_on_disconnect is not None else os.environ.get(CANCEL_ENV) == "1":
        app.add_middleware(CancelOnDisconnect)
    app.include_router(leaky.router if variant == "leaky" else fixed.router)
    _mount_error_answers(app)
    _mount_health(app, variant)
    _mount_experiments(app)
    # The app's own view of its pools, for drainwatch to reconcile with pg_stat_activity.
    mount_pool_view(app, lambda: {"sqlalchemy": app.state.engine, "asyncpg": app.state.pool})
    return app


def _lifespan(variant: str, dsn: str) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Both pools, owned by the app's lifespan: opened at start, closed (boundedly) at shutdown."""
    name = app_name(variant)
    pg_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1).replace("postgres://", "postgresql+asyncpg://", 1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(
            pg_url,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=POOL_TIMEOUT,
            connect_args={"server_settings": {"application_name": f"{name}:sa"}},
        )
        pool = await asyncpg.create_pool(
            dsn, min_size=2, max_size=RAW_POOL_MAX, server_settings={"application_name": f"{name}:raw"}
        )
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text, created timestamptz DEFAULT now())"
                    )
                )
            app.state.engine = engine
            app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
            app.state.pool = pool
            app.state.variant = variant
            app.state.kept = []  # connections /debug/leak-one leaked on purpose
            app.state.handlers = Counter()  # how handlers ended: completed / cancelled
            app.state.clients = Counter()  # requests per load-generator process
            yield
        finally:
            # pool.close() waits for every checked-out connection, forever if one leaked:
            # bound the wait, then drop what is left.
            try:
                await asyncio.wait_for(pool.close(), 1)
            except TimeoutError:
                pool.terminate()
            await engine.dispose()

    return lifespan


def _mount_error_answers(app: FastAPI) -> None:
    @app.exception_handler(PaymentDeclined)
    async def declined(request: Request, exc: PaymentDeclined) -> JSONResponse:
        return JSONResponse({"error": "payment_declined", "detail": str(exc)}, status_code=502)

    @app.exception_handler(sa_exc.TimeoutError)
    async def pool_exhausted(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        return JSONResponse({"error": "pool_exhausted", "detail": str(exc).splitlines()[0]}, status_code=503)

    @app.exception_handler(TimeoutError)
    async def deadline(request: Request, exc: TimeoutError) -> JSONResponse:
        return JSONResponse({"error": "deadline_exceeded"}, status_code=504)


def _mount_health(app: FastAPI, variant: str) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: answers without touching the database."""
        return {"status": "ok", "variant": variant}

    @app.get("/health/db")
    async def health_db(request: Request) -> dict[str, object]:
        """Readiness: one query through each pool. Hangs when the raw pool is exhausted."""
        async with request.app.state.sessions() as session:
            sa_ok = (await session.execute(text("SELECT 1"))).scalar_one()
        async with request.app.state.pool.acquire() as conn:
            raw_ok = await conn.fetchval("SELECT 1")
        return {"status": "ok", "sqlalchemy": sa_ok, "asyncpg": raw_ok}


def _mount_experiments(app: FastAPI) -> None:
    """Routes the tests and benchmarks use to show one behaviour each."""

    @app.get("/slow")
    async def slow(request: Request, ms: int = 500) -> dict[str, str]:
        """A plain (non-streaming) endpoint: shows whether a client hang-up cancels a handler."""
        try:
            await asyncio.sleep(ms / 1000)
        except asyncio.CancelledError:
            request.app.state.handlers["slow:cancelled"] += 1
            raise
        request.app.state.handlers["slow:completed"] += 1
        return {"slept_ms": str(ms)}

    @app.post("/debug/leak-one")
    async def leak_one(request: Request) -> dict[str, int]:
        """Check out one raw connection and never give it back (both variants): the
        smallest leak there is, for measuring what drainwatch can detect."""
        conn = await request.app.state.pool.acquire()
        await conn.fetchval(tag("SELECT 1 AS leak_one", "leak-one"))
        request.app.state.kept.append(conn)  # referenced, so no garbage collector rescues it
        return {"leaked": len(request.app.state.kept)}

    @app.get("/work")
    async def work(request: Request, ms: int = 2000) -> dict[str, str]:
        """Plain endpoint doing slow database work: a hang-up does not stop it (zombie work)."""
        async with request.app.state.pool.acquire() as conn:
            await conn.execute(tag(f"SELECT pg_sleep({ms / 1000:.3f})", "work"))
        return {"worked_ms": str(ms)}

    @app.get("/work-stream")
    async def work_stream(request: Request, ms: int = 2000) -> StreamingResponse:
        """The same work behind a streaming reply: a hang-up cancels it, and asyncpg cancels the query."""

        async def body() -> AsyncIterator[str]:
            yield "working\n"
            async with request.app.state.pool.acquire() as conn:
                await conn.execute(tag(f"SELECT pg_sleep({ms / 1000:.3f})", "work-stream"))
            yield "done\n"

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/stats")
    async def stats(request: Request) -> dict[str, object]:
        """How handlers ended (completed or cancelled) per route, and requests per client process."""
        return {"handlers": dict(request.app.state.handlers), "clients": dict(request.app.state.clients)}
