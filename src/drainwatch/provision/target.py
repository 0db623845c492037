"""The service under test: the bundled demo, the user's own service drainwatch starts (``--serve``),
or a URL it is given (``--target-url``).

A service drainwatch starts gets a free loopback port, its database in the environment
(``DATABASE_URL`` and the ``PG*`` variables), its output in ``logs/target.log`` and SIGTERM
at the end. Its process tree is known, so its backends can be found by their sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from drainwatch import demo_service as demo
from drainwatch.errors import TargetProblem
from drainwatch.instrument import POOL_VIEW_PATH
from drainwatch.provision.processes import Child, free_port, last_words

SETUP_TIMEOUT = 600.0  # migrations can be slow; a setup that takes longer is stuck
START_TIMEOUT = 60.0
SHUTDOWN_GRACE = 10.0  # SIGTERM to exit: a lifespan that disposes its pools needs far less


@dataclass(frozen=True)
class Target:
    url: str
    pid: int | None  # the process, when drainwatch started it
    app_name: str | None  # application_name pattern of its backends, when known
    pool_limit: int | None
    pool_view_path: str | None = None  # where it exposes drainwatch.instrument's pool view
    kind: str = "url"  # demo | served | url
    command: str | None = None  # what was served (shown in the report instead of a demo variant)
    restart: Callable[[], Awaitable[int]] | None = field(default=None, compare=False, repr=False)  # → new pid
    current_pid: Callable[[], int | None] | None = field(default=None, compare=False, repr=False)
    stop: Callable[[], Awaitable[int | None]] | None = field(default=None, compare=False, repr=False)  # → exit code
    log_path: Path | None = None
    # its exit status once it has ended (negative: the signal), None while it runs or when not ours
    exit_code: Callable[[], int | None] | None = field(default=None, compare=False, repr=False)
    channel: Path | None = None  # where the bootstrap in its processes writes (a service drainwatch started)

    def pid_now(self) -> int | None:
        """The process serving now (a restart replaces it)."""
        return self.current_pid() if self.current_pid else self.pid


async def read_pool_view(target: Target, *, fresh: bool = True) -> dict[str, Any] | None:
    """The target's own pool counts, or None when it does not expose them (or does not answer):
    its route when it mounts one, else what the bootstrap wrote of its processes' pools (with
    ``fresh=False`` as last written, at most half a second ago, without waiting for a new one)."""
    if not target.pool_view_path:
        if not target.channel:
            return None
        if not fresh:
            return channel_view(target.channel, target.pid_now())
        return await fresh_channel_view(target.channel, target.pid_now())
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            resp = await client.get(target.url + target.pool_view_path)
            resp.raise_for_status()
            return dict(resp.json())
    except (httpx.HTTPError, ValueError):
        return None


def demo_app_pattern(variant: str) -> str:
    return f"{demo.app_name(variant)}:%"


@asynccontextmanager
async def _serving(child: Child, url: str, what: str, **target: Any) -> AsyncIterator[Target]:
    """Start ``child``, wait until ``url`` answers HTTP, yield the Target; stop it however the block ends."""

    async def start() -> int:
        proc = await child.start()
        await wait_until_serving(url, proc=proc, log_path=child.log_path, what=what, timeout=START_TIMEOUT)
        return proc.pid

    async def restart() -> int:
        await child.stop()
        return await start()

    try:
        await start()
        yield Target(
            url=url,
            pid=child.pid,
            restart=restart,
            current_pid=lambda: child.pid,
            stop=child.stop,
            log_path=child.log_path,
            exit_code=lambda: child.proc.returncode if child.proc else None,
            **target,
        )
    finally:
        await child.stop()


@asynccontextmanager
async def demo_service(
    variant: str, dsn: str, log_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[Target]:
    """Run the demo service under uvicorn on a free loopback port until exit."""
    port = free_port()
    argv = [sys.executable, "-m", "drainwatch.demo_service", "--variant", variant, "--port", str(port)]
    # The DSN goes through the environment, not argv: argv is world-readable in ps.
    child = Child(
        argv,
        name="target",
        log_path=log_path,
        env={**(env or {}), demo.DSN_ENV: dsn},
        stop_signal=signal.SIGINT,
        grace=8.0,
    )
    async with _serving(
        child,
        f"http://127.0.0.1:{port}",
        "the demo service",
        app_name=demo_app_pattern(variant),
        pool_limit=demo.POOL_LIMIT,
        pool_view_path=POOL_VIEW_PATH,
        kind="demo",
    ) as target:
        yield target


def database_env(dsn: str, name: str) -> dict[str, str]:
    """``name`` = the URL, plus the libpq ``PG*`` variables for code that reads those instead."""
    parts = urlsplit(dsn)
    env = {
        name: dsn,
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or ""),
        "PGDATABASE": parts.path.lstrip("/") or "postgres",
    }
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return {k: v for k, v in env.items() if v}


def serve_argv(command: str, port: int) -> list[str]:
    """The served command with ``{port}`` filled in, split as a shell would (but run without one)."""
    try:
        return shlex.split(command.replace("{port}", str(port)))
    except ValueError as exc:
        raise TargetProblem(f"--serve {command!r} cannot be split into words ({exc})", hint="check its quotes") from exc


@asynccontextmanager
async def served_service(
    command: str,
    *,
    dsn: str,
    log_path: Path,
    setup: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    database_variable: str = "DATABASE_URL",
    pool_limit: int | None = None,
    pool_view_path: str | None = None,
    instrument: bool = True,
) -> AsyncIterator[Target]:
    """The user's own service: ``setup`` once, then ``command`` on a free port until exit (SIGTERM).
    With ``instrument`` its pools are recorded by drainwatch's bootstrap (see ``bootstrap_env``).

    Raises TargetProblem naming the exit code and the log's last lines when setup fails or
    the service exits or never answers.
    """
    port = free_port()
    child_env = {**database_env(dsn, database_variable), "PORT": str(port), **dict(env or {})}
    if setup:
        await run_setup(setup, env=child_env, cwd=cwd, log_path=log_path.with_name("setup.log"))
    child = Child(
        serve_argv(command, port),
        name="target",
        log_path=log_path,
        env={**child_env, **bootstrap_env(stack_channel(log_path), child_env, instrument)},
        stop_signal=signal.SIGTERM,
        grace=SHUTDOWN_GRACE,
        cwd=cwd,
    )
    try:
        async with _serving(
            child,
            f"http://127.0.0.1:{port}",
            "your service",
            app_name=None,
            pool_limit=pool_limit,
            pool_view_path=pool_view_path,
            kind="served",
            command=command.replace("{port}", str(port)),  # as it was run
            channel=stack_channel(log_path),
        ) as target:
            yield target
    finally:
        # What the service printed may hold the password drainwatch handed it.
        redact_file(log_path, child_env.get("PGPASSWORD"))
        redact_file(log_path.with_name("setup.log"), child_env.get("PGPASSWORD"))


def redact_file(path: Path, secret: str | None) -> None:
    """Replace ``secret`` by ``***`` in ``path`` (a log drainwatch captured), if both exist."""
    if not secret or not path.is_file():
        return
    text = path.read_text(errors="replace")
    if secret in text:
        path.write_text(text.replace(secret, "***"))


async def run_setup(command: str, *, env: Mapping[str, str], cwd: Path | None, log_path: Path) -> None:
    """Run the setup command to its end. Raises TargetProblem when it fails or hangs."""
    child = Child(
        serve_argv(command, 0),
        name="setup",
        log_path=log_path,
        env=dict(env),
        cwd=cwd,
        stop_signal=signal.SIGTERM,
        grace=5.0,
    )
    try:
        proc = await child.start()
    except OSError as exc:
        raise TargetProblem(
            f"the setup command {command!r} cannot start ({exc.strerror or exc})",
            hint="check the command and --serve-cwd / [target] cwd",
        ) from exc
    try:
        code = await asyncio.wait_for(proc.wait(), SETUP_TIMEOUT)
    except TimeoutError as exc:
        raise TargetProblem(
            f"the setup command {command!r} ran for {SETUP_TIMEOUT:.0f}s without ending",
            hint="read logs/setup.log in the run folder",
        ) from exc
    finally:
        await child.stop()
    if code != 0:
        raise TargetProblem(
            f"the setup command {command!r} failed with exit code {code}: {last_words(log_path, 3)}",
            hint="read logs/setup.log in the run folder; the run stopped before any load",
        )


async def wait_until_serving(
    url: str,
    *,
    proc: asyncio.subprocess.Process | None = None,
    log_path: Path | None = None,
    timeout: float = 30,
    what: str = "the service",
) -> None:
    """Return once ``url`` answers HTTP (any status); raise TargetProblem if it never does."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if proc is not None and proc.returncode is not None:
                raise TargetProblem(
                    f"{what} exited at start with exit code {proc.returncode}: {last_words(log_path)}",
                    hint="read logs/target.log in the run folder",
                )
            try:
                await client.get(url.rstrip("/") + "/")
                return
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    started = f" {timeout:.0f}s after it started" if proc is not None else ""
                    raise TargetProblem(
                        f"nothing answers HTTP at {url}{started} ({type(exc).__name__})",
                        hint="does the command listen on {port}? read logs/target.log"
                        if proc is not None
                        else "start the service first, or fix --target-url",
                    ) from exc
            await asyncio.sleep(0.1)


@asynccontextmanager
async def external_target(url: str, pool_limit: int | None, pool_view_path: str | None = None) -> AsyncIterator[Target]:
    """A service drainwatch was given: check it answers HTTP; never stop it."""
    await wait_until_serving(url, timeout=3)
    yield Target(url=url.rstrip("/"), pid=None, app_name=None, pool_limit=pool_limit, pool_view_path=pool_view_path)


def listening_pid(url: str) -> int | None:
    """The process listening on ``url``'s loopback port, when this machine runs it and we may see it."""
    import psutil

    port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except psutil.AccessDenied:
        return None
    return None


# The distributions that make a service's stack: its framework, server, driver and ORM.
STACK_DISTRIBUTIONS = frozenset(
    {
        "python", "fastapi", "starlette", "litestar", "aiohttp", "quart", "flask", "django", "sanic",
        "uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "uvloop", "sqlalchemy", "sqlmodel",
        "asyncpg", "psycopg", "psycopg-binary", "psycopg-c", "psycopg-pool", "psycopg2", "psycopg2-binary",
        "tortoise-orm", "databases", "pgbouncer",
    }
)  # fmt: skip
BOOTSTRAP = Path(__file__).resolve().parent.parent / "bootstrap"  # its sitecustomize reports what was imported


def bootstrap_env(channel: Path, env: Mapping[str, str], instrument: bool = True) -> dict[str, str]:
    """The variables that put drainwatch's bootstrap in a served Python process (before the
    service's own PYTHONPATH) and tell it where to write; ``instrument`` False: its stack only,
    no pool hooked."""
    path = [str(BOOTSTRAP), env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))]
    return {
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "DRAINWATCH_CHANNEL": str(channel),
        "DRAINWATCH_INSTRUMENT": "1" if instrument else "0",
    }


def stack_channel(log_path: Path) -> Path:
    """Where a served service's bootstrap writes, beside its log (absolute: the service runs in a
    folder of its own)."""
    return log_path.with_name("stack").absolute()


def _reports(channel: Path, pattern: str, root: int | None) -> dict[int, dict[str, Any]]:
    """The bootstrap's files ``pattern`` in ``channel`` written by ``root`` and its descendants, by pid."""
    if not root:
        return {}
    reports = {}
    for path in sorted(channel.glob(pattern)):
        try:
            found = json.loads(path.read_text())
            reports[int(found["pid"])] = found
        except (OSError, ValueError, KeyError, TypeError):
            continue
    tree: set[int] = {root}
    grew = True
    while grew:
        grew = False
        for child, found in reports.items():
            if found.get("ppid") in tree and child not in tree:
                tree.add(child)
                grew = True
    return {pid: reports[pid] for pid in sorted(tree & reports.keys())}


FRESH_WAIT = 2.0  # seconds the service's processes get to write a fresh view (they look every 0.5 s)


async def fresh_channel_view(channel: Path, root: int | None) -> dict[str, Any] | None:
    """``channel_view`` as the processes see their pools now: drainwatch touches ``want`` and waits
    (up to FRESH_WAIT) until every process that writes a view has written one since."""
    want = channel / "want"
    try:
        want.touch()
        asked = want.stat().st_mtime
    except OSError:
        return channel_view(channel, root)
    import psutil

    deadline = time.monotonic() + FRESH_WAIT
    while time.monotonic() < deadline:
        views = [p for p in channel.glob("pool-*.json") if psutil.pid_exists(int(p.stem.split("-")[1]))]
        try:
            if all(path.stat().st_mtime >= asked for path in views):
                break
        except OSError:  # replaced while looked at: look again
            pass
        await asyncio.sleep(0.1)
    return channel_view(channel, root)


def channel_view(channel: Path, root: int | None) -> dict[str, Any] | None:
    """The pool views the service's live processes wrote (``pool-<pid>.json``), merged as one view:
    each pool named with its process, the counts summed, every checkout and group kept. None when
    no process of it wrote one (no pool hooked, or --no-instrument)."""
    import psutil

    views = [
        view
        for pid, view in _reports(channel, "pool-*.json", root).items()
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    if not views:
        return None
    return {
        "pools": {f"{name} (pid {view['pid']})": pool for view in views for name, pool in view["pools"].items()},
        **{key: sum(int(view.get(key) or 0) for view in views) for key in ("checked_out", "idle", "limit")},
        "checkouts": sorted((c for view in views for c in view["checkouts"]), key=lambda c: c["taken_t"]),
        "collected": [group for view in views for group in view["collected"]],
        "waiting": [group for view in views for group in view["waiting"]],
        "holds": _merged_holds([view.get("holds") or {} for view in views]),
        "processes": len(views),
    }


def _merged_holds(per_process: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each route's holds over every process: counts and totals summed; p50 weighted by count,
    p95 and the longest the highest of any process (a percentile of percentiles is not exact)."""
    merged: dict[str, dict[str, Any]] = {}
    for holds in per_process:
        for route, h in holds.items():
            m = merged.setdefault(route, {"count": 0, "total_s": 0.0, "p50_s": 0.0, "p95_s": 0.0, "max_s": 0.0})
            count = int(h.get("count") or 0)
            if count:
                m["p50_s"] = (m["p50_s"] * m["count"] + float(h.get("p50_s") or 0) * count) / (m["count"] + count)
            m["count"] += count
            m["total_s"] += float(h.get("total_s") or 0)
            m["p95_s"] = max(m["p95_s"], float(h.get("p95_s") or 0))
            m["max_s"] = max(m["max_s"], float(h.get("max_s") or 0))
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]["total_s"]))


def served_stack(channel: Path, pid: int | None) -> dict[str, str]:
    """The stack the served process tree imported (``pid`` and its descendants, as the bootstrap
    wrote them into ``channel``): distribution -> version. {} when nothing was written (not a
    Python process, or one started with -I or -E)."""
    stack: dict[str, str] = {}
    for found in _reports(channel, "stack-*.json", pid).values():
        stack["python"] = str(found.get("python"))
        stack.update(
            _stack_versions(tuple(map(str, found.get("path") or [])), set(map(str, found.get("modules") or [])))
        )
    return stack


def _stack_versions(path: tuple[str, ...], modules: set[str]) -> dict[str, str]:
    """The stack distributions on ``path`` that provide one of ``modules``, with their versions."""
    from importlib.metadata import distributions

    found = {}
    for dist in distributions(path=list(path)):
        name = str(dist.metadata["Name"] or "").lower().replace("_", "-")
        if name not in STACK_DISTRIBUTIONS or name in found:
            continue
        tops = set((dist.read_text("top_level.txt") or "").split())
        tops |= {f.parts[0].removesuffix(".py") for f in dist.files or () if ".dist-info" not in f.parts[0]}
        if tops & modules:
            found[name] = dist.version
    return found
