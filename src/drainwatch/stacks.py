"""Where the application is, read from live stacks: the frames of a checkout, and what the
service's tasks and threads are waiting in. A leaf: the standard library only, so the pool
view (``drainwatch.instrument``) can carry it into someone else's process.

An application frame is one whose file is not in the standard library, site-packages or
drainwatch itself: the route that took a connection, not the driver that opened it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import sysconfig
import threading
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from types import CodeType, FrameType
from typing import Any

SITE_FRAMES = 4  # application frames kept per checkout, innermost first
LIBRARY_RUN = (
    10  # library frames in a row after an application frame that end a checkout's walk (each costs a frame object)
)
WAITING_GROUPS = 50  # groups of waiting tasks and threads the view serves, most common first
_STDLIB = tuple(os.path.realpath(path) for key in ("stdlib", "platstdlib") if (path := sysconfig.get_paths().get(key)))
Site = tuple[CodeType, int]  # a frame's code and line, kept instead of the frame (which holds its locals)
_APPLICATION_CODE: dict[int, tuple[CodeType, bool]] = {}  # id(code) -> (code, whether it is the application's)
_LIBRARY_ROOTS = (
    _STDLIB
    + tuple(os.path.realpath(path) for key in ("purelib", "platlib") if (path := sysconfig.get_paths().get(key)))
    + (os.path.dirname(os.path.realpath(__file__)),)
)
# The bundled demo is an application, though it ships inside drainwatch (and, installed, in site-packages).
_DEMO_ROOT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "demo_service") + os.sep


def application_frames() -> list[Site]:
    """The application's frames, innermost first, as ``(code, line)``: the thread's own stack,
    then its parent greenlets' (SQLAlchemy's async API runs the checkout in a greenlet whose
    stack stops short of the handler that awaits it). Called on every checkout, so it only
    collects: ``describe`` turns them into text when someone reads them, the walk stops at the
    last frame it needs, and each code object is judged once."""
    found: list[Site] = []
    frame: FrameType | None = sys._getframe(1)
    if _scan(frame, found):
        return found
    greenlets = sys.modules.get("greenlet")
    current = greenlets.getcurrent() if greenlets is not None else None
    while current is not None and (current := current.parent) is not None:
        # the awaiting side: where the parent greenlet switched into this one
        if _scan(current.gr_frame, found):
            break
    return found


def _scan(frame: FrameType | None, found: list[Site]) -> bool:
    """Add the application's sites of one chain of frames to ``found``; True when the walk is done."""
    since = 0
    while frame is not None:
        code = frame.f_code
        # by id: a code object hashes its whole contents; the entry keeps it alive, so its id stays its own
        known = _APPLICATION_CODE.get(id(code))
        if known is None:
            known = _APPLICATION_CODE[id(code)] = (code, _file(code.co_filename)[2])
        if known[1]:
            since = 0
            site = (code, frame.f_lineno)
            if site not in found:
                found.append(site)
                if len(found) == SITE_FRAMES:
                    return True
        elif found:
            since += 1
            if since > LIBRARY_RUN:  # past the app's own middleware: the server's stack
                return True
        frame = frame.f_back  # each step makes a frame object: the reason the walk ends early
    return False


def describe(sites: Iterable[Site]) -> list[str]:
    """``path:line in function()`` for each site."""
    return [f"{_file(code.co_filename)[0]}:{line} in {code.co_name}()" for code, line in sites]


def waiting() -> list[dict[str, Any]]:
    """The service's asyncio tasks (when called on its event loop) and threads, other than the
    caller, that stand in application code, grouped by where: ``at`` the innermost application
    frame, ``waiting_in`` the innermost frame outside the standard library (the driver's
    ``acquire``, its ``execute``), with a count, most common first."""
    groups: Counter[tuple[str, str, str]] = Counter()
    for what, frames in [*_tasks(), *_threads()]:
        at = _named(reversed(frames), 1)
        if at:
            groups[(what, at[0], _waiting_in(frames))] += 1
    return [
        {"what": what, "at": at, "waiting_in": inner, "count": n}
        for (what, at, inner), n in groups.most_common(WAITING_GROUPS)
    ]


def _tasks() -> Iterator[tuple[str, list[FrameType]]]:
    """Each pending task's await chain, outermost frame first (``Task.get_stack`` stops at the
    task's own coroutine while it is suspended; the chain goes down through ``cr_await``)."""
    try:
        current, tasks = asyncio.current_task(), asyncio.all_tasks()
    except RuntimeError:  # no running loop: a sync service has no tasks to show
        return
    for task in tasks:
        if task is not current and not task.done():
            yield "task", list(_await_chain(task.get_coro()))


def _await_chain(awaitable: object) -> Iterator[FrameType]:
    while awaitable is not None:
        frame = _first(awaitable, ("cr_frame", "gi_frame", "ag_frame"))
        if frame is not None:
            yield frame
        awaitable = _first(awaitable, ("cr_await", "gi_yieldfrom", "ag_await"))


def _first(obj: object, names: tuple[str, ...]) -> Any:
    for name in names:
        if (value := getattr(obj, name, None)) is not None:
            return value
    return None


def _threads() -> Iterator[tuple[str, list[FrameType]]]:
    """Every other thread's stack, outermost frame first (sync handlers in a thread pool)."""
    me = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        if ident != me:
            yield "thread", [f for f, _ in traceback.walk_stack(frame)][::-1]


def _waiting_in(frames: list[FrameType]) -> str:
    """The innermost frame outside the standard library, or the innermost of all."""
    outside = [f for f in frames if not _file(f.f_code.co_filename)[1]]
    frame = (outside or frames)[-1]
    return _where(frame)


def _named(frames: Iterable[FrameType], limit: int) -> list[str]:
    """The first ``limit`` distinct application frames of ``frames``, in their order."""
    found: list[str] = []
    for frame in frames:
        if not _file(frame.f_code.co_filename)[2]:
            continue
        where = _where(frame)
        if where not in found:
            found.append(where)
        if len(found) == limit:
            break
    return found


def _where(frame: FrameType) -> str:
    return f"{_file(frame.f_code.co_filename)[0]}:{frame.f_lineno} in {frame.f_code.co_name}()"


@functools.lru_cache(maxsize=4096)
def _file(filename: str) -> tuple[str, bool, bool]:
    """(the path to show, in the standard library, the application's) of a code object's file:
    ``realpath`` costs system calls, and the same few files come back on every checkout."""
    path = os.path.realpath(filename)
    if path.startswith(_DEMO_ROOT):
        return os.path.join("demo_service", path[len(_DEMO_ROOT) :]), False, True
    library = "site-packages" in path
    stdlib = path.startswith(_STDLIB) and not library  # site-packages lies inside lib/python3.x
    application = not (filename.startswith("<") or library or path.startswith(_LIBRARY_ROOTS))
    return _short(path, stdlib), stdlib, application


def _short(path: str, stdlib: bool) -> str:
    """A path relative to the working folder, or to site-packages or the standard library for theirs."""
    if "site-packages" in path:
        return path.rpartition("site-packages" + os.sep)[2]
    for root in _STDLIB if stdlib else ():
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root)
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
