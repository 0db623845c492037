"""Stand-ins for the slow, non-database work an agent service does (an LLM call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

TOKEN_DELAY = 0.05  # seconds between streamed tokens
TOKENS = 16  # a reply streams for about 0.8 s: long enough for a client to hang up mid-way


async def llm_tokens(prompt: str, n: int = TOKENS) -> AsyncIterator[str]:
    words = (prompt or "hello").split() or ["hello"]
    for i in range(n):
        await asyncio.sleep(TOKEN_DELAY)
        yield words[i % len(words)] + " "


async def counted(request: Any, name: str, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """Pass ``tokens`` through, counting whether the stream completed or was cancelled."""
    try:
        async for token in tokens:
            yield token
    except (asyncio.CancelledError, GeneratorExit):
        request.app.state.handlers[f"{name}:cancelled"] += 1
        raise
    request.app.state.handlers[f"{name}:completed"] += 1


async def llm_summary(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "summary"


async def record_usage() -> None:
    """Flush token counts to a metrics backend (an await, as real cleanup code has)."""
    await asyncio.sleep(0.005)


class PaymentDeclined(Exception):
    """The business error the ``error`` chaos kind triggers mid-transaction."""


class UpstreamHiccup(Exception):
    """A transient failure a retry loop retries."""
