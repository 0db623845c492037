"""Request-scoped identity (request id, chaos scenario), carried in contextvars.

The request-id middleware is the seed's (``call_next``); queries are tagged with a SQL
comment from these values so a connection left open names the request that left it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from starlette.requests import Request
from starlette.responses import Response

request_id: ContextVar[str] = ContextVar("request_id", default="-")
scenario: ContextVar[str] = ContextVar("scenario", default="-")

_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _clean(value: str | None, default: str) -> str:
    # Header values end up inside a SQL comment: never let "*/" or quotes through.
    return _SAFE.sub("", value or "")[:64] or default


async def request_id_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    rid = _clean(request.headers.get("x-request-id"), uuid.uuid4().hex[:16])
    clients = getattr(request.app.state, "clients", None)
    if clients is not None:
        clients[_clean(request.headers.get("x-drainwatch-client"), "other")] += 1
    rid_token = request_id.set(rid)
    sc_token = scenario.set(_clean(request.headers.get("x-drainwatch-scenario"), "-"))
    try:
        response = await call_next(request)
        response.headers["x-request-id"] = rid
        return response
    finally:
        request_id.reset(rid_token)
        scenario.reset(sc_token)


def tag(sql: str, route: str) -> str:
    """``sql`` prefixed with a comment naming the route, scenario and request id."""
    return f"/* drainwatch route={route} scenario={scenario.get()} rid={request_id.get()} */ {sql}"
