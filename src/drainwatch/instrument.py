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
drainwatch can say "taken at app/routes.py:42 in report() 31 s ago" of a lingering one.
Supported: SQLAlchemy engines (sync or async) and their ``QueuePool`` (through its pool
events), asyncpg pools and psycopg_pool pools, sync or async (their acquire and release are
traced on the pool object itself). No import of those libraries happens here: pools are
recognised by their methods.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import re
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from typing import Any

from drainwatch.stacks import Site, application_frames, describe, waiting

POOL_VIEW_PATH = "/_drainwatch/pool"
RECORD_ENV = "DRAINWATCH_RECORD_CHECKOUTS"  # "0": count the pools, record no checkout
_checkouts: dict[int, dict[str, Any]] = {}  # id(connection handle) -> where and when it was taken
_traced_classes: dict[type, type] = {}  # a pool class -> its subclass that records checkouts
_request: ContextVar[dict[str, str] | None] = ContextVar("drainwatch_request", default=None)
_REQUEST_HEADERS = {b"x-request-id": "id", b"x-drainwatch-scenario": "scenario"}
_collected: Counter[tuple[int, tuple[Site, ...]]] = (
    Counter()
)  # SQLAlchemy checkouts the garbage collector ended, by stack
_waits: dict[int, dict[str, Any]] = {}  # id(asyncpg pool) -> acquires that found every connection out
_gone = itertools.count(-1, -1)  # keys for checkouts whose connection object was collected
HOLD_ROUTES = 50  # routes whose holds are kept: paths the normalising misses must not grow this
HOLD_KEPT = 512  # the latest holds kept per route, for its percentiles
_holds: dict[str, dict[str, Any]] = {}  # route -> count, total and longest hold, the latest holds
_ID_SEGMENT = re.compile(r"/(?:\d+|[0-9a-fA-F-]{32,36})(?=/|$)")  # /items/42, /orders/<uuid>


def _pool_of(pool: Any) -> Any:
    """The pool object itself: a SQLAlchemy (async) engine's pool, or the pool given."""
    return getattr(getattr(pool, "sync_engine", pool), "pool", pool)


def track_checkouts(pool: Any) -> bool:
    """Record where each connection of a pool is taken until it is given back: SQLAlchemy
    through its pool events, asyncpg and psycopg_pool by tracing acquire and release on this
    pool object only. Idempotent; False for a pool it does not know."""
    pool = _pool_of(pool)
    if hasattr(pool, "checkedout") and hasattr(pool, "checkedin"):
        return _track_sqlalchemy(pool)
    if hasattr(pool, "get_idle_size") and hasattr(pool, "_acquire"):
        return _trace(pool, _asyncpg_methods)
    if hasattr(pool, "getconn") and hasattr(pool, "putconn"):
        coroutine = inspect.iscoroutinefunction(pool.getconn)
        return _trace(pool, _psycopg_async_methods if coroutine else _psycopg_methods)
    return False


def _track_sqlalchemy(pool: Any) -> bool:
    if getattr(pool, "_drainwatch_tracked", False):
        return True
    from sqlalchemy import event

    owner = id(pool)
    event.listen(pool, "checkout", lambda _dbapi, record, fairy: _on_checkout(owner, record, fairy))
    event.listen(pool, "checkin", _on_checkin)
    event.listen(pool, "invalidate", lambda _conn, record, _exc: _checkouts.pop(id(record), None))
    pool._drainwatch_tracked = True
    return True


def _always() -> bool:
    return True


def _on_checkout(owner: int, record: Any, fairy: Any) -> None:
    key = id(record)
    # The fairy is what the app holds: once it is collected, SQLAlchemy takes the connection back
    # ("The garbage collector is trying to clean up non-checked-in connection"), and where it was
    # taken is the line that never closed it.
    held = weakref.ref(fairy, lambda _ref: _collected_by_gc(key))
    _taken(key, owner, lambda: _backend_pid(record.dbapi_connection), application_frames(), lambda: held() is not None)
    _checkouts[key]["_fairy"] = held


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    found = _checkouts.get(id(record))
    if found is not None and found["_fairy"]() is None:
        _collected_by_gc(id(record))  # checked in by SQLAlchemy's cleanup of a collected fairy
    else:
        _given_back(id(record))


def _collected_by_gc(key: int) -> None:
    found = _checkouts.pop(key, None)
    if found is not None:
        _collected[(found["_pool"], tuple(found["_sites"]))] += 1


def _taken(
    key: int, owner: int, pid: Callable[[], int | None], sites: list[Site], out: Callable[[], bool] = _always
) -> None:
    """Record a checkout. Only what is cheap is done here, on every checkout: the pid is asked
    and the frames are named when the view is read."""
    _checkouts[key] = {
        "_out": out,
        "_pool": owner,
        "_pid": pid,
        "taken_t": time.time(),
        "_sites": sites,
        "request": _request.get(),
    }


def _trace(pool: Any, methods: Callable[[type], dict[str, Any]]) -> bool:
    """Swap this pool object's class for a subclass whose acquire and release record checkouts.
    asyncpg's pool has ``__slots__``, so its methods cannot be replaced on the instance; a
    subclass adding no slots has the same layout, and other pools of the class are untouched."""
    cls = type(pool)
    if not getattr(cls, "_drainwatch_traced", False):
        if cls not in _traced_classes:
            body = {"__slots__": (), "__module__": cls.__module__, "_drainwatch_traced": True, **methods(cls)}
            _traced_classes[cls] = type(cls.__name__, (cls,), body)
        pool.__class__ = _traced_classes[cls]
    return True


def _asyncpg_methods(cls: type) -> dict[str, Any]:
    # asyncpg keeps the proxy it lent until release: holding it here changes nothing
    async def _acquire(self: Any, timeout: float | None) -> Any:
        stack = application_frames()
        queued, started = self.get_idle_size() == 0 and self.get_size() >= self.get_max_size(), time.monotonic()
        proxy = await cls._acquire(self, timeout)  # type: ignore[attr-defined]
        if queued:  # every connection was out: this request waited for one to come back
            _waited(self, time.monotonic() - started)
        _taken(
            id(proxy), id(self), lambda: _backend_pid(proxy), stack, lambda: getattr(proxy, "_con", None) is not None
        )
        return proxy

    async def release(self: Any, connection: Any, *, timeout: float | None = None) -> None:
        _given_back(id(connection))
        await cls.release(self, connection, timeout=timeout)  # type: ignore[attr-defined]

    return {"_acquire": _acquire, "release": release}


def _waited(pool: Any, seconds: float) -> None:
    waits = _waits.setdefault(id(pool), {"waited": 0, "wait_max_s": 0.0})
    waits["waited"] += 1
    waits["wait_max_s"] = round(max(waits["wait_max_s"], seconds), 3)


def _psycopg_methods(cls: type) -> dict[str, Any]:
    def getconn(self: Any, timeout: float | None = None) -> Any:
        stack = application_frames()
        conn = cls.getconn(self, timeout=timeout)  # type: ignore[attr-defined]
        _lent(self, conn, stack)
        return conn

    def putconn(self: Any, conn: Any) -> None:
        _returned(conn)
        cls.putconn(self, conn)  # type: ignore[attr-defined]

    return {"getconn": getconn, "putconn": putconn}


def _psycopg_async_methods(cls: type) -> dict[str, Any]:
    async def getconn(self: Any, timeout: float | None = None) -> Any:
        stack = application_frames()
        conn = await cls.getconn(self, timeout=timeout)  # type: ignore[attr-defined]
        _lent(self, conn, stack)
        return conn

    async def putconn(self: Any, conn: Any) -> None:
        _returned(conn)
        await cls.putconn(self, conn)  # type: ignore[attr-defined]

    return {"getconn": getconn, "putconn": putconn}


def _lent(pool: Any, conn: Any, stack: list[Site]) -> None:
    """A psycopg_pool checkout. It is held weakly: a connection the app dropped is closed by the
    garbage collector, yet the pool still counts it lent, so its record stays, under a key of its
    own once its id may belong to another connection: the pool is short of it for good."""
    _keep_collected(id(conn))
    ref = weakref.ref(conn)
    pid = _backend_pid(conn)  # now: a dropped connection can no longer say it
    _taken(id(conn), id(pool), lambda: pid if ref() is not None else None, stack)
    _checkouts[id(conn)]["_ref"] = ref


def _keep_collected(key: int) -> None:
    found = _checkouts.get(key)
    if found is not None and "_ref" in found and found["_ref"]() is None:
        _checkouts[next(_gone)] = _checkouts.pop(key)


def _returned(conn: Any) -> None:
    _given_back(id(conn))


def _given_back(key: int) -> None:
    """A checkout ended as it should: how long it was held counts for the route that took it."""
    found = _checkouts.pop(key, None)
    if found is None:
        return
    try:
        _hold(found["request"], time.time() - found["taken_t"])
    except Exception:  # noqa: BLE001 - a figure drainwatch reads must never fail a release
        pass


def _hold(request: dict[str, str] | None, seconds: float) -> None:
    route = (
        "outside a request" if request is None else f"{request.get('method', '')} {route_of(request.get('path', ''))}"
    )
    kept = _holds.get(route)
    if kept is None:
        if len(_holds) >= HOLD_ROUTES:
            return
        kept = _holds[route] = {"count": 0, "total_s": 0.0, "max_s": 0.0, "latest": deque(maxlen=HOLD_KEPT)}
    kept["count"] += 1
    kept["total_s"] += seconds
    kept["max_s"] = max(kept["max_s"], seconds)
    kept["latest"].append(seconds)


@functools.lru_cache(maxsize=1024)  # the same few paths on every release
def route_of(path: str) -> str:
    """A path with its ids folded (``/items/42`` → ``/items/{id}``), so holds group by route."""
    return _ID_SEGMENT.sub("/{id}", path.split("?", 1)[0])


def holds() -> dict[str, dict[str, Any]]:
    """Per route, how long its requests held a connection they gave back: count, total, p50, p95,
    longest (seconds); the routes holding the most connection-time first. Since the process
    started: drainwatch subtracts the view it read before the load from the one after."""
    out = {}
    for route, kept in sorted(_holds.items(), key=lambda kv: -kv[1]["total_s"]):
        latest = sorted(kept["latest"])
        out[route] = {
            "count": kept["count"],
            "total_s": round(kept["total_s"], 3),
            "p50_s": round(latest[len(latest) // 2], 4) if latest else 0.0,
            "p95_s": round(latest[min(len(latest) - 1, int(0.95 * len(latest)))], 4) if latest else 0.0,
            "max_s": round(kept["max_s"], 4),
        }
    return out


def _backend_pid(conn: Any) -> int | None:
    """The server pid behind a DB-API connection: asyncpg (adapted), psycopg 3, psycopg2."""
    driver = getattr(conn, "driver_connection", conn)
    readers: tuple[Callable[[], Any], ...] = (
        lambda: driver.get_server_pid(),
        lambda: driver.info.backend_pid,
        lambda: driver.get_backend_pid(),
    )
    for read in readers:
        try:
            return int(read())
        except Exception:  # noqa: BLE001 - not this driver
            continue
    return None


def checkouts(owners: Collection[int] | None = None) -> list[dict[str, Any]]:
    """The connections taken and not given back, oldest first, of the pools whose ids are
    ``owners`` (all by default). One its pool no longer counts out is dropped: SQLAlchemy took
    it back from the garbage collector (then it is counted in ``collected``), asyncpg detached it."""
    for key, found in list(_checkouts.items()):
        if not found["_out"]():
            _collected_by_gc(key) if "_fairy" in found else _checkouts.pop(key, None)
        else:
            _keep_collected(key)
    kept = sorted(
        (c for c in _checkouts.values() if owners is None or c["_pool"] in owners), key=lambda c: c["taken_t"]
    )
    return [
        {"pid": c["_pid"](), "taken_t": round(c["taken_t"], 3), "stack": describe(c["_sites"]), "request": c["request"]}
        for c in kept
    ]


def collected(owners: Collection[int] | None = None) -> list[dict[str, Any]]:
    """Connections the app dropped without closing, which SQLAlchemy took back when the garbage
    collector found them, by where they were taken, most first (since the first view)."""
    counts: Counter[tuple[Site, ...]] = Counter()
    for (owner, sites), n in _collected.items():
        if owners is None or owner in owners:
            counts[sites] += n
    return [{"stack": describe(sites), "count": n} for sites, n in counts.most_common(20)]


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
            **_waits.get(id(pool), {"waited": 0, "wait_max_s": 0.0}),  # counted from the first view on
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
            "waited": stats.get("requests_queued", 0),  # psycopg_pool's own count, since the pool opened
            "wait_total_s": round(stats.get("requests_wait_ms", 0) / 1000, 3),
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
    """The counts of ``pools`` (name → pool), where their lent connections were taken, and the
    service's busy tasks. The first view starts the recording of checkouts, unless the
    service's environment has ``DRAINWATCH_RECORD_CHECKOUTS=0`` (counts only)."""
    if os.environ.get(RECORD_ENV, "1") != "0":
        for pool in pools.values():
            track_checkouts(pool)
    described = {name: describe_pool(pool) for name, pool in pools.items()}
    known = [p for p in described.values() if p["kind"] != "unknown"]
    owners = {id(_pool_of(pool)) for pool in pools.values()}
    return {
        "pools": described,
        "checked_out": sum(p["checked_out"] for p in known),
        "idle": sum(p["idle"] for p in known),
        "limit": sum(p["limit"] for p in known),
        "checkouts": checkouts(owners),
        "collected": collected(owners),
        "waiting": waiting(),  # the service's tasks and threads still at work, where they wait
        "holds": holds(),
    }


def mount_pool_view(app: Any, pools: Callable[[], Mapping[str, Any]], path: str = POOL_VIEW_PATH) -> None:
    """Add ``GET path`` to a Starlette/FastAPI ``app``, and ``RequestContext`` around it so each
    checkout knows its request; ``pools`` is called per request, so pools created later (in a
    lifespan) are found. Call it where the app is built, before it starts."""
    from starlette.responses import JSONResponse

    async def endpoint(request: Any) -> JSONResponse:
        return JSONResponse(pool_view(pools()))

    app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestContext)


def seen_request(method: str, path: str, headers: Any) -> dict[str, str]:
    """The request a checkout is made for, from its method, path and headers (pairs of bytes, or a
    mapping of str): what ``RequestContext`` and the bootstrap's hooks record."""
    seen = {"method": method, "path": path}
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        key = _REQUEST_HEADERS.get(name if isinstance(name, bytes) else name.lower().encode("latin-1"))
        if key is not None:
            seen[key] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return seen


class WSGIRequestContext:
    """``RequestContext`` for a WSGI app (Flask, Django under gunicorn's sync workers): the request
    is known while the app builds its response, where connections are taken."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        headers = {k[5:].replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_X_")}
        token = _request.set(seen_request(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), headers))
        try:
            return self.app(environ, start_response)
        finally:
            _request.reset(token)


def in_request(seen: dict[str, str]) -> Any:
    """Set the request of the checkouts made from now on in this context; the token to reset it."""
    return _request.set(seen)


def out_of_request(token: Any) -> None:
    _request.reset(token)


class RequestContext:
    """ASGI middleware: the request each checkout was made for (method, path, ``X-Request-ID``,
    ``X-Drainwatch-Scenario``), so a connection never given back names the request that took it,
    with no SQL tags. ``mount_pool_view`` adds it; wrap another ASGI app with it yourself.
    The handler's context carries it into tasks it starts and into sync endpoints' threads."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        token = _request.set(
            seen_request(str(scope.get("method", "")), str(scope.get("path", "")), scope.get("headers"))
        )
        try:
            await self.app(scope, receive, send)
        finally:
            _request.reset(token)
