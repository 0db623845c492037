"""A tiny Starlette service without a database, for the chaos scenarios' own tests.

It counts, per route, how requests ended and whether the client was seen to go away:

    GET /slow?ms=500   plain JSON after ``ms`` of sleep, polling ``request.is_disconnected()``
                       every 10 ms; counts ``slow:started``, ``slow:disconnected`` (the client
                       went away), ``slow:completed``, ``slow:cancelled``
    GET /fast          plain JSON at once
    GET /missing       404
    GET /boom          500
    GET /stream        a StreamingResponse of 20 chunks 50 ms apart; counts
                       ``stream:completed`` or ``stream:cut`` (the generator stopped early)
    GET /auth?ms=0     401 without ``Authorization: Bearer t`` (``auth:denied``); with it,
                       like /slow (``auth:authorized``, ``auth:disconnected``...)
    GET /stats         the counters, plus ``scenario:<X-Drainwatch-Scenario>`` per request

Run: ``python -m tests.targets.plain_starlette --port 8090`` (cwd = the repository root).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

COUNTS: Counter[str] = Counter()


def _seen(request: Request) -> None:
    COUNTS[f"scenario:{request.headers.get('x-drainwatch-scenario', '-')}"] += 1


async def _sleep_watching(request: Request, route: str, ms: int) -> None:
    """Sleep ``ms`` in 10 ms steps, noting the first time the client is seen gone; the handler
    runs to the end either way (what a plain endpoint does on Starlette)."""
    COUNTS[f"{route}:started"] += 1
    gone = False
    loop = asyncio.get_running_loop()
    end = loop.time() + ms / 1000
    try:
        while (left := end - loop.time()) > 0:
            if not gone and await request.is_disconnected():
                gone = True
                COUNTS[f"{route}:disconnected"] += 1
            await asyncio.sleep(min(0.01, left))
    except asyncio.CancelledError:
        COUNTS[f"{route}:cancelled"] += 1
        raise
    COUNTS[f"{route}:completed"] += 1


async def slow(request: Request) -> Response:
    _seen(request)
    ms = int(request.query_params.get("ms", "500"))
    await _sleep_watching(request, "slow", ms)
    return JSONResponse({"slept_ms": ms})


async def fast(request: Request) -> Response:
    _seen(request)
    return JSONResponse({"fast": True})


async def missing(request: Request) -> Response:
    _seen(request)
    return JSONResponse({"detail": "no such thing"}, status_code=404)


async def boom(request: Request) -> Response:
    _seen(request)
    COUNTS["boom:raised"] += 1
    return JSONResponse({"detail": "the handler failed"}, status_code=500)


async def stream(request: Request) -> Response:
    _seen(request)

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        try:
            for i in range(20):
                yield f"chunk {i}\n".encode()
                sent += 1
                await asyncio.sleep(0.05)
        finally:
            COUNTS["stream:completed" if sent == 20 else "stream:cut"] += 1

    return StreamingResponse(body(), media_type="text/plain")


async def auth(request: Request) -> Response:
    _seen(request)
    if request.headers.get("authorization") != "Bearer t":
        COUNTS["auth:denied"] += 1
        return JSONResponse({"detail": "not authenticated"}, status_code=401)
    COUNTS["auth:authorized"] += 1
    await _sleep_watching(request, "auth", int(request.query_params.get("ms", "0")))
    return JSONResponse({"user": "t"})


async def stats(request: Request) -> Response:
    return JSONResponse(dict(COUNTS))


app = Starlette(
    routes=[
        Route("/slow", slow),
        Route("/fast", fast),
        Route("/missing", missing),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/auth", auth),
        Route("/stats", stats),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
