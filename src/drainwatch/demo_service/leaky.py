"""The leaky variant: each route carries one failure mode from the seeds.

Do not copy this code. ``fixed.py`` serves the same routes done right.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from drainwatch.demo_service.agent import (
    PaymentDeclined,
    UpstreamHiccup,
    counted,
    llm_summary,
    llm_tokens,
    record_usage,
)
from drainwatch.demo_service.context import tag

router = APIRouter()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # Failure mode 4: a yield dependency without try/finally. When the endpoint raises,
    # the exception is thrown in at the yield and close() below never runs.
    session = request.app.state.sessions()
    yield session
    await session.close()


@router.get("/items")
async def items(
    request: Request, fail: bool = False, session: AsyncSession = Depends(get_session)
) -> dict[str, object]:
    async with request.app.state.pool.acquire() as conn:  # stock levels come from the raw pool
        stock = await conn.fetchval(tag("SELECT 42", "items"))
    count = (await session.execute(text(tag("SELECT count(*) FROM orders", "items")))).scalar_one()
    if fail:
        raise PaymentDeclined("items lookup failed")
    return {"orders": count, "stock": stock}


@router.post("/orders")
async def create_order(request: Request, fail: bool = False) -> dict[str, object]:
    # Failure modes 1 and 5: the session is closed after the work, not in finally. When the
    # handler raises mid-transaction the connection stays checked out, idle in transaction.
    session = request.app.state.sessions()
    await session.execute(text(tag("INSERT INTO orders (item) VALUES ('book')", "orders")))
    if fail:
        raise PaymentDeclined("card declined")
    await session.commit()
    await session.close()
    return {"ok": True}


@router.post("/chat")
async def chat(request: Request, prompt: str = "tell me about pools") -> StreamingResponse:
    pool = request.app.state.pool

    async def reply() -> AsyncIterator[str]:
        # Failure mode 2: cleanup that awaits while the task is being cancelled. When the
        # client hangs up, Starlette cancels this generator; under anyio's cancellation the
        # await in finally is cancelled too, so release() is never reached.
        conn = await pool.acquire()
        try:
            await conn.fetchval(tag("SELECT count(*) FROM orders", "chat"))
            async for token in counted(request, "chat", llm_tokens(prompt)):
                yield token
        finally:
            await record_usage()
            await pool.release(conn)

    return StreamingResponse(reply(), media_type="text/plain")


@router.get("/report")
async def report(request: Request, deadline_ms: int = 300, work_ms: int = 1000) -> dict[str, object]:
    pool = request.app.state.pool

    async def build() -> dict[str, object]:
        # Failure mode 3: CancelledError caught and swallowed. The deadline's cancellation
        # is turned into a partial answer and the release below is skipped.
        conn = await pool.acquire()
        try:
            await conn.fetchval(tag("SELECT count(*) FROM orders", "report"))
            summary = await llm_summary(work_ms / 1000)
        except asyncio.CancelledError:
            return {"partial": True}
        await pool.release(conn)
        return {"summary": summary}

    async with asyncio.timeout(deadline_ms / 1000):
        return await build()


@router.post("/refund")
async def refund(request: Request, fail: bool = False) -> dict[str, object]:
    # Failure mode 1 on the raw pool: the release comes after the work, not in finally.
    # When the handler raises, the connection is never given back (idle, held).
    conn = await request.app.state.pool.acquire()
    await conn.fetchval(tag("SELECT count(*) FROM orders", "refund"))
    if fail:
        raise PaymentDeclined("refund rejected")
    await request.app.state.pool.release(conn)
    return {"ok": True}


@router.post("/retry")
async def retry(request: Request, hiccups: int = 1) -> dict[str, object]:
    # Failure mode 6: double release in a retry loop. The retry path gives the connection
    # back, the next attempt uses the released proxy, and finally releases it again.
    pool = request.app.state.pool
    conn = await pool.acquire()
    try:
        for attempt in range(3):
            try:
                value = await conn.fetchval(tag("SELECT 1", "retry"))
                if attempt < hiccups:
                    raise UpstreamHiccup
                return {"value": value, "attempts": attempt + 1}
            except UpstreamHiccup:
                await pool.release(conn)
        return {"value": None}
    finally:
        await pool.release(conn)
