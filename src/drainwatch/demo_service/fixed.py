"""The fixed variant: the same routes as ``leaky.py``, with cleanup that cannot be skipped.

``async with`` for every checkout and transaction, ``try/finally`` around ``yield``,
cancellation always propagated.
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
    counted,
    llm_summary,
    llm_tokens,
    record_usage,
)
from drainwatch.demo_service.context import tag

router = APIRouter()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


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
    async with request.app.state.sessions() as session, session.begin():
        await session.execute(text(tag("INSERT INTO orders (item) VALUES ('book')", "orders")))
        if fail:
            raise PaymentDeclined("card declined")
    return {"ok": True}


@router.post("/chat")
async def chat(request: Request, prompt: str = "tell me about pools") -> StreamingResponse:
    pool = request.app.state.pool

    async def reply() -> AsyncIterator[str]:
        # The connection is only needed for the lookup: give it back before streaming.
        async with pool.acquire() as conn:
            await conn.fetchval(tag("SELECT count(*) FROM orders", "chat"))
        async for token in counted(request, "chat", llm_tokens(prompt)):
            yield token
        await record_usage()

    return StreamingResponse(reply(), media_type="text/plain")


@router.get("/report")
async def report(request: Request, deadline_ms: int = 300, work_ms: int = 1000) -> dict[str, object]:
    pool = request.app.state.pool
    async with asyncio.timeout(deadline_ms / 1000):
        async with pool.acquire() as conn:
            await conn.fetchval(tag("SELECT count(*) FROM orders", "report"))
            summary = await llm_summary(work_ms / 1000)
    return {"summary": summary}


@router.post("/refund")
async def refund(request: Request, fail: bool = False) -> dict[str, object]:
    async with request.app.state.pool.acquire() as conn:
        await conn.fetchval(tag("SELECT count(*) FROM orders", "refund"))
        if fail:
            raise PaymentDeclined("refund rejected")
    return {"ok": True}


@router.post("/retry")
async def retry(request: Request, hiccups: int = 1) -> dict[str, object]:
    async with request.app.state.pool.acquire() as conn:
        for attempt in range(3):
            value = await conn.fetchval(tag("SELECT 1", "retry"))
            if attempt >= hiccups:  # retry within the one checkout; release once, on exit
                return {"value": value, "attempts": attempt + 1}
    return {"value": None}
