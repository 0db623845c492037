"""The pool view with no code change: the pools a served service creates are found as their
libraries are imported, and their checkouts recorded, as ``drainwatch.instrument`` does for a
service that mounts the view by hand; the view reaches drainwatch as a file per process in the
channel folder (``pool-<pid>.json``), not as a route of the service, so any framework and any
number of worker processes are seen.

Hooked, by class, when its module is imported: SQLAlchemy's ``Pool`` (every engine, sync or
async), asyncpg's ``Pool``, psycopg_pool's ``ConnectionPool`` and ``AsyncConnectionPool``. The
recording is ``drainwatch.instrument``, imported from the service's environment when drainwatch
is installed there, else from the folder this file is in. A hook that fails is written to
``hooks-<pid>.txt`` in the channel and changes nothing in the service.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

# module -> the classes whose instances are pools
POOLS = {
    "sqlalchemy.pool.base": ("Pool",),
    "asyncpg.pool": ("Pool",),
    "psycopg_pool.pool": ("ConnectionPool",),
    "psycopg_pool.pool_async": ("AsyncConnectionPool",),
}
# module -> what tells each checkout its request: the servers and frameworks that run the app
SERVERS = ("uvicorn.config", "gunicorn.workers.base", "aiohttp.web_app")
HOOKED = {*POOLS, *SERVERS}
_pools: list[tuple[str, Callable[[], Any]]] = []  # name -> the pool, weakly where it can be
KEPT = 100  # pools whose counts are shown: an app that makes a pool per request must not grow this
_instrument: types.ModuleType | None = None
_last = ""


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: lets the other finders find a hooked module, then hooks it once loaded."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in HOOKED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader)
                return spec
            if spec is not None:
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        _hook_module(module)


def _hook_module(module: types.ModuleType) -> None:
    name = module.__name__
    for cls in POOLS.get(name, ()):
        _guarded(functools.partial(_hook_class_named, module, cls), f"hooking {name}.{cls}")
    if name in SERVERS:
        _guarded(lambda: _SERVER_HOOKS[name](module), f"hooking {name}")


def _hook_class_named(module: types.ModuleType, name: str) -> None:
    _hook_class(getattr(module, name))


def _hook_class(cls: type) -> None:
    original: Callable[..., None] = cls.__dict__.get("__init__") or super(cls, cls).__init__  # type: ignore[misc,arg-type,unused-ignore]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _guarded(lambda: _register(self), f"recording a {type(self).__name__}")

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


def _uvicorn(module: types.ModuleType) -> None:
    """uvicorn (alone or as gunicorn's worker): its loaded ASGI app inside ``RequestContext``."""
    load = module.Config.load

    def loaded(self: Any) -> None:
        load(self)
        if not getattr(self.loaded_app, "_drainwatch_context", False):
            self.loaded_app = _load_instrument().RequestContext(self.loaded_app)
            self.loaded_app._drainwatch_context = True

    module.Config.load = loaded


def _gunicorn(module: types.ModuleType) -> None:
    """gunicorn's WSGI workers (sync, gthread): their app inside ``WSGIRequestContext``. An ASGI
    worker (uvicorn's) is left to the uvicorn hook."""
    load_wsgi = module.Worker.load_wsgi

    def loaded(self: Any) -> None:
        load_wsgi(self)
        if type(self).__module__.startswith("gunicorn.workers.") and "uvicorn" not in type(self).__module__:
            self.wsgi = _load_instrument().WSGIRequestContext(self.wsgi)

    module.Worker.load_wsgi = loaded


def _aiohttp(module: types.ModuleType) -> None:
    """aiohttp.web: each request's handling knows its request."""
    handle = module.Application._handle

    async def _handle(self: Any, request: Any) -> Any:
        instrument = _load_instrument()
        token = instrument.in_request(instrument.seen_request(request.method, request.path, request.headers))
        try:
            return await handle(self, request)
        finally:
            instrument.out_of_request(token)

    module.Application._handle = _handle


_SERVER_HOOKS: dict[str, Callable[[types.ModuleType], None]] = {
    "uvicorn.config": _uvicorn,
    "gunicorn.workers.base": _gunicorn,
    "aiohttp.web_app": _aiohttp,
}


def _register(pool: Any) -> None:
    instrument = _load_instrument()
    if os.environ.get(instrument.RECORD_ENV, "1") != "0":
        instrument.track_checkouts(pool)
    try:
        ref: Callable[[], Any] = weakref.ref(pool)
    except TypeError:  # asyncpg's pool has __slots__ and no __weakref__: held until it closes
        ref = lambda: None if getattr(pool, "_closed", False) or getattr(pool, "_closing", False) else pool  # noqa: E731
    _pools.append((f"{type(pool).__name__}#{len(_pools) + 1}", ref))
    del _pools[:-KEPT]


def _load_instrument() -> types.ModuleType:
    """``drainwatch.instrument``: the service's own drainwatch, or the one beside this file."""
    global _instrument
    if _instrument is None:
        try:
            import drainwatch.instrument as found
        except ImportError:
            # drainwatch is not installed where the service runs: a package of one folder, its
            # own __init__ not run (it needs nothing of it), that holds instrument and stacks
            package = types.ModuleType("drainwatch")
            package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
            sys.modules.setdefault("drainwatch", package)
            import drainwatch.instrument as found
        _instrument = found
    return _instrument


def write_view(channel: str) -> None:
    """Write this process's pool view into ``channel`` when it changed (called by the bootstrap's thread)."""
    global _last
    if _instrument is None or not _pools:  # loaded for a server's request context, with no pool hooked
        return
    wanted = _wanted(channel)
    live = {name: pool for name, ref in _pools if (pool := ref()) is not None}
    view = _instrument.pool_view(live)
    # every pool's checkouts, also one whose counts are not shown
    view["checkouts"], view["collected"] = _instrument.checkouts(), _instrument.collected()
    view["pid"], view["ppid"] = os.getpid(), os.getppid()
    text = json.dumps(view, default=str)
    if text != _last or wanted:
        path = os.path.join(channel, f"pool-{os.getpid()}.json")
        with open(f"{path}.part", "w") as handle:
            handle.write(text)
        os.replace(f"{path}.part", path)
        _last = text


_answered = 0.0  # the last request for a fresh view this process answered (the mtime of ``want``)


def _wanted(channel: str) -> bool:
    """True once per request drainwatch makes for a fresh view (it touches ``want`` in the channel)."""
    global _answered
    try:
        asked = os.stat(os.path.join(channel, "want")).st_mtime
    except OSError:
        return False
    if asked <= _answered:
        return False
    _answered = asked
    return True


def after_fork() -> None:
    """A forked worker writes its own view: the parent's last one is not its."""
    global _last
    _last = ""


def _guarded(action: Callable[[], None], what: str) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - a hook that fails must not change the service
        channel = os.environ.get("DRAINWATCH_CHANNEL", "")
        if channel:
            with open(os.path.join(channel, f"hooks-{os.getpid()}.txt"), "a") as handle:
                handle.write(f"{what}: {type(exc).__name__}: {exc}\n")


def install() -> None:
    """Hook the pool classes of libraries imported from now on (and of those already imported)."""
    sys.meta_path.insert(0, _Finder())
    for name in HOOKED:
        if (module := sys.modules.get(name)) is not None:
            _hook_module(module)
