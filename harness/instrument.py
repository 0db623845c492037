"""Opt-in pool instrumentation: let drainwatch see your pool's own count of checked-out connections.

``pg_stat_activity`` cannot see everything: a connection the garbage collector closed, or
one the server killed, vanishes there while the pool still counts it as checked out, and
the service starves with nothing extra visible. Two lines in your app fix that::

    from drainwatch.instrument import mount_pool_view
    mount_pool_view(app, lambda: {"db": app.state.engine, "raw": app.state.pool})

``GET /_drainwatch/pool`` then answers with each pool's checked-out, idle and limit counts,
and drainwatch reconciles them with what PostgreSQL shows. Supported: SQLAlchemy engines
(sync or async) and their ``QueuePool``, asyncpg pools, psycopg_pool pools. No import of
those libraries happens here: pools are recognised by their methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

POOL_VIEW_PATH = "/_drainwatch/pool"


def describe_pool(pool: Any) -> dict[str, Any]:
    """Counts for one pool object; ``{"kind": "unknown"}`` when it is not recognised."""
    pool = getattr(pool, "sync_engine", pool)  # SQLAlchemy AsyncEngine → Engine
    pool = getattr(pool, "pool", pool)  # Engine → its Pool
    if hasattr(pool, "checkedout") and hasattr(pool, "checkedin"):  # SQLAlchemy QueuePool
        limit = pool.size() + max(0, getattr(pool, "_max_overflow", 0))
        return {
            "kind": "sqlalchemy",
            "checked_out": pool.checkedout(),
            "idle": _sqlalchemy_idle(pool),
            "min_size": 0,
            "limit": limit,
            "max_idle_s": None,
        }
    if hasattr(pool, "get_idle_size") and hasattr(pool, "get_max_size"):  # asyncpg Pool
        size, idle = pool.get_size(), pool.get_idle_size()
        return {
            "kind": "asyncpg",
            "checked_out": size - idle,
            "idle": idle,
            "min_size": pool.get_min_size(),
            "limit": pool.get_max_size(),
            "max_idle_s": getattr(pool, "_max_inactive_connection_lifetime", None),
        }
    if hasattr(pool, "get_stats") and hasattr(pool, "max_idle"):  # psycopg_pool
        stats = pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return {
            "kind": "psycopg_pool",
            "checked_out": size - idle,
            "idle": idle,
            "min_size": pool.min_size,
            "limit": pool.max_size,
            "max_idle_s": pool.max_idle,
            "waiting": stats.get("requests_waiting", 0),
        }
    return {"kind": "unknown"}


def _sqlalchemy_idle(pool: Any) -> int:
    """Idle connections that are really open. ``checkedin()`` counts slots, and a slot whose
    connection the garbage collector or an invalidation closed stays in the pool empty,
    to be reconnected on its next checkout: it holds nothing on the server."""
    queue = getattr(getattr(pool, "_pool", None), "queue", None)
    if queue is None:
        return int(pool.checkedin())
    return sum(1 for record in list(queue) if getattr(record, "dbapi_connection", None) is not None)


def pool_view(pools: Mapping[str, Any]) -> dict[str, Any]:
    described = {name: describe_pool(pool) for name, pool in pools.items()}
    known = [p for p in described.values() if p["kind"] != "unknown"]
    return {
        "pools": described,
        "checked_out": sum(p["checked_out"] for p in known),
        "idle": sum(p["idle"] for p in known),
        "limit": sum(p["limit"] for p in known),
    }


def mount_pool_view(app: Any, pools: Callable[[], Mapping[str, Any]], path: str = POOL_VIEW_PATH) -> None:
    """Add ``GET path`` to a Starlette/FastAPI ``app``; ``pools`` is called per request,
    so pools created later (in a lifespan) are found."""
    from starlette.responses import JSONResponse

    async def endpoint(request: Any) -> JSONResponse:
        return JSONResponse(pool_view(pools()))

    app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
