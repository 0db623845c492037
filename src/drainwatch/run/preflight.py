"""Preflight: before warm-up, every request the load will send is tried once, and the probe must reach the database.

A route that answers 404 would make the whole load test nothing; a probe that never
touches the database answers happily while the pool is exhausted. Both are usage errors,
found here in seconds rather than read into a verdict after minutes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from drainwatch.errors import DatabaseProblem, TargetProblem, UsageError
from drainwatch.plan import Match
from drainwatch.provision.postgres import Watch
from drainwatch.sample.selector import pid_in, remote_endpoints, resolve, server_port
from drainwatch.traffic import Request

REQUEST_TIMEOUT = 15.0
NOT_SERVED = (404, 405, 501)


async def try_requests(
    url: str, requests: Sequence[tuple[str, Request]], expected: Mapping[str, set[int]] | None = None
) -> list[dict[str, Any]]:
    """Send each (kind, request) once. Returns what each answered. A status the kind is told to
    expect (an error request that answers 404 on purpose) is never a usage error.

    Raises UsageError for a route the service does not serve (404/405/501) and TargetProblem
    when the service refuses connections.
    """
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        for kind, request in _unique(requests):
            row: dict[str, Any] = {"kind": kind, "request": str(request), "status": None, "error": ""}
            try:
                # named like the load's own requests, so a connection this try leaves behind is told apart
                tagged = {"X-Drainwatch-Scenario": f"preflight-{kind}", **dict(request.headers)}
                resp = await client.request(request.method, request.path, headers=tagged, json=request.json)
                row["status"] = resp.status_code
            except httpx.ConnectError as exc:
                raise TargetProblem(
                    f"{url} refused the connection for {request} ({exc})",
                    hint="is the service up? read logs/target.log",
                ) from exc
            except httpx.HTTPError as exc:  # slow or odd: the load will tell; not a usage error
                row["error"] = f"{type(exc).__name__}: {exc}"
            seen.append(row)
            if row["status"] in (expected or {}).get(kind, set()):
                continue
            if row["status"] in NOT_SERVED:
                where = (
                    "--probe-path"
                    if kind == "probe"
                    else "[[endpoints]] or --endpoint"
                    if kind == "steady"
                    else f"[chaos.{kind}] request"
                )
                raise UsageError(
                    f"{request} ({kind}) answered {row['status']} before any load: the service does not serve it",
                    hint=f"fix the path in {where}",
                )
            if row["status"] in (401, 403):
                raise UsageError(
                    f"{request} ({kind}) answered {row['status']}: the service wants credentials",
                    hint="pass them with --header 'Authorization: Bearer TOKEN' (or [target] headers)",
                )
    return seen


def _unique(requests: Sequence[tuple[str, Request]]) -> list[tuple[str, Request]]:
    out, keys = [], set()
    for kind, request in requests:
        key = (request.method, request.path)
        if key not in keys:
            keys.add(key)
            out.append((kind, request))
    return out


_ACTIVITY = """
    SELECT pid, backend_start, state_change, coalesce(query, '') AS query
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND {where}
"""


async def probe_reaches_database(url: str, request: Request, watch: Watch, match: Match) -> dict[str, Any]:
    """Send the probe once and tell whether one of the service's backends ran a statement meanwhile.

    Raises UsageError when it answers an error, or answers without touching the database.
    """
    before, sessions = await _activity(watch, match), await _sessions(watch)
    started = time.time()
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        try:
            resp = await client.request(request.method, request.path, headers=dict(request.headers), json=request.json)
        except httpx.HTTPError as exc:
            raise UsageError(
                f"the probe {request} got no answer ({type(exc).__name__}) before any load",
                hint="choose a quick request that needs the database: --probe-path PATH",
            ) from exc
    after = await _activity(watch, match)
    if resp.status_code >= 300:
        raise UsageError(
            f"the probe {request} answered {resp.status_code} before any load",
            hint="choose a request that succeeds and needs the database: --probe-path PATH",
        )
    touched = [
        row for pid, row in after.items() if pid not in before or before[pid]["state_change"] != row["state_change"]
    ]
    opened = 0
    if not touched:  # a connection per request (Django's CONN_MAX_AGE = 0) is gone before we look again
        opened = await _new_sessions(watch, sessions)
    if not touched and not opened:
        elsewhere = _other_postgres(match, watch.dsn)
        if elsewhere:
            raise UsageError(
                f"your service talks to PostgreSQL at {elsewhere}, not to the database drainwatch watches "
                f"({_where(watch.dsn)}), so none of its connections can be seen",
                hint=f"make it read $DATABASE_URL (or --database-env NAME), or watch that server: --dsn postgresql://USER@{elsewhere}/DB",
            )
        raise UsageError(
            f"the probe {request} answered {resp.status_code} without any of the service's backends running a "
            "statement: it would answer even with the pool exhausted",
            hint="probe a route that queries the database: --probe-path PATH (or [probe] path)",
        )
    return {
        "request": str(request),
        "status": resp.status_code,
        "backends": len(touched) or opened,
        "statement": touched[0]["query"][:200] if touched else "",
        "at": started,
        "seen_by": "a backend's state changed" if touched else "a session was opened and closed",
    }


async def _activity(watch: Watch, match: Match) -> dict[int, dict[str, Any]]:
    where, params = resolve(match, watch.dsn)
    return {row["pid"]: row for row in await watch.rows(_ACTIVITY.format(where=where), params)}


async def _sessions(watch: Watch) -> int | None:
    """Sessions the server has opened so far (PostgreSQL 14+), or None where it does not count them."""
    try:
        rows = await watch.rows(
            "SELECT pg_stat_clear_snapshot(), coalesce(sum(sessions), 0)::bigint AS n FROM pg_stat_database"
        )
    except DatabaseProblem:
        raise
    except Exception:  # an older server: no sessions column
        return None
    return int(rows[0]["n"])


async def _new_sessions(watch: Watch, before: int | None, wait: float = 1.5) -> int:
    """Sessions opened since ``before``: a backend's statistics reach the server when it exits."""
    if before is None:
        return 0
    deadline = time.monotonic() + wait
    while True:
        now = await _sessions(watch)
        if now is not None and now > before:
            return now - before
        if time.monotonic() > deadline:
            return 0
        await asyncio.sleep(0.1)


def _where(dsn: str) -> str:
    return f"127.0.0.1:{server_port(dsn)}" if "127.0.0.1" in dsn or "localhost" in dsn else f"port {server_port(dsn)}"


def _other_postgres(match: Match, dsn: str) -> str | None:
    """``host:port`` of a PostgreSQL-looking server (port 5432) the service talks to instead of ours."""
    if match.client_pid_file is None:
        return None
    ours = server_port(dsn)
    for address, port in remote_endpoints(pid_in(match.client_pid_file)):
        if port == 5432 and port != ours:
            return f"{address}:{port}"
    return None
