"""Opt-in pool instrumentation: let drainwatch see your pool's own count of checked-out connections.

``pg_stat_activity`` cannot see everything: a connection the garbage collector closed, or
one the server killed, vanishes there while the pool still counts it as checked out, and
the service starves with nothing extra visible. Two lines in your app fix that::

    from drainwatch.instrument import mount_pool_view
    mount_pool_view(app, lambda: {"db": app.state.engine, "raw": app.state.pool})

``GET /_drainwatch/pool`` then answers with each pool's checked-out, idle and limit counts,
and drainwatch reconciles them with what PostgreSQL shows. For SQLAlchemy pools it also
records, from the first view on, where each connection still checked out was taken: the
application's frames of the checkout (not the libraries'), when, and its backend's pid, so
drainwatch can say "taken at app/routes.py:42 in report() 31 s ago" of a lingering one. Supported: SQLAlchemy engines
(sync or async) and their ``QueuePool``, asyncpg pools, psycopg_pool pools. No import of
those libraries happens here: pools are recognised by their methods.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

POOL_VIEW_PATH = "/_drainwatch/pool"
SITE_FRAMES = 4  # application frames kept per checkout, innermost first
# Where the libraries live: their frames are not the application's.
_LIBRARY_ROOTS = tuple(
    os.path.realpath(path)
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (path := sysconfig.get_paths().get(key))
) + (os.path.dirname(os.path.realpath(__file__)),)
_checkouts: dict[int, dict[str, Any]] = {}  # id(connection record) -> where and when it was taken


def track_checkouts(pool: Any) -> bool:
    """Record where each connection of a SQLAlchemy pool is checked out until it is checked in.
    Idempotent; False for a pool that is not SQLAlchemy's."""
    pool = getattr(getattr(pool, "sync_engine", pool), "pool", pool)
    if not (hasattr(pool, "checkedout") and hasattr(pool, "checkedin")):
        return False
    if getattr(pool, "_drainwatch_tracked", False):
        return True
    from sqlalchemy import event

    event.listen(pool, "checkout", _on_checkout)
    event.listen(pool, "checkin", _on_checkin)
    event.listen(pool, "invalidate", lambda _conn, record, _exc: _checkouts.pop(id(record), None))
    pool._drainwatch_tracked = True
    return True


def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    _checkouts[id(record)] = {
        "record": record,
        "pid": _backend_pid(dbapi_connection),
        "taken_t": round(time.time(), 3),
        "stack": _application_frames(),
    }


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    _checkouts.pop(id(record), None)


def _backend_pid(conn: Any) -> int | None:
    """The server pid behind a DB-API connection: asyncpg (adapted), psycopg 3, psycopg2."""
    driver = getattr(conn, "driver_connection", conn)
    for read in (
        lambda: driver.get_server_pid(),
        lambda: driver.info.backend_pid,
        lambda: driver.get_backend_pid(),
    ):
        try:
            return int(read())
        except Exception:  # noqa: BLE001 - not this driver
            continue
    return None


def _application_frames() -> list[str]:
    """``path:line in function`` of the application's frames, innermost first: the thread's own
    stack, then its parent greenlets' (SQLAlchemy's async API runs the checkout in a greenlet
    whose stack stops short of the handler that awaits it)."""
    frames = [frame for frame, _ in traceback.walk_stack(None)]
    greenlets = sys.modules.get("greenlet")
    current = greenlets.getcurrent() if greenlets is not None else None
    while current is not None and (current := current.parent) is not None:
        # the awaiting side: where the parent greenlet switched into this one
        frames += [frame for frame, _ in traceback.walk_stack(current.gr_frame)] if current.gr_frame else []
    found: list[str] = []
    for frame in frames:
        name = frame.f_code.co_filename
        path = os.path.realpath(name)
        if name.startswith("<") or path.startswith(_LIBRARY_ROOTS) or "site-packages" in path:
            continue
        where = f"{_short(path)}:{frame.f_lineno} in {frame.f_code.co_name}()"
        if where not in found:
            found.append(where)
        if len(found) == SITE_FRAMES:
            break
    return found


def _short(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def checkouts() -> list[dict[str, Any]]:
    """The connections taken and not given back, oldest first. A checkout whose connection the
    garbage collector already took back (its fairy is gone) is dropped: the pool no longer counts it."""
    for key, found in list(_checkouts.items()):
        fairy = getattr(found["record"], "fairy_ref", None)
        if fairy is None or fairy() is None:
            _checkouts.pop(key, None)
    kept = sorted(_checkouts.values(), key=lambda c: c["taken_t"])
    return [{k: v for k, v in c.items() if k != "record"} for c in kept]


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
    for pool in pools.values():
        track_checkouts(pool)
    described = {name: describe_pool(pool) for name, pool in pools.items()}
    known = [p for p in described.values() if p["kind"] != "unknown"]
    return {
        "pools": described,
        "checked_out": sum(p["checked_out"] for p in known),
        "idle": sum(p["idle"] for p in known),
        "limit": sum(p["limit"] for p in known),
        "checkouts": checkouts(),
    }


def mount_pool_view(app: Any, pools: Callable[[], Mapping[str, Any]], path: str = POOL_VIEW_PATH) -> None:
    """Add ``GET path`` to a Starlette/FastAPI ``app``; ``pools`` is called per request,
    so pools created later (in a lifespan) are found."""
    from starlette.responses import JSONResponse

    async def endpoint(request: Any) -> JSONResponse:
        return JSONResponse(pool_view(pools()))

    app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
