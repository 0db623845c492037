"""The services in tests/targets each do what their docstring claims, against a real PostgreSQL.

Every target runs as its own process (``python -m tests.targets.<name>``, database in
``DATABASE_URL``), is driven with a bounded burst of concurrent requests, and is then judged
only by what ``pg_stat_activity`` shows for its ``application_name`` in its own database once
traffic has stopped -- plus whether it still serves. The numbers asserted are the ones
measured on this machine (see tests/targets/README.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import fresh_database
from tests.helpers import serving, stop

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SETTLE = 2.0  # seconds between the end of traffic and the reading
ASYNCPG_RESET = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;"
AUTH = {"Authorization": "Bearer secret-token"}


@dataclass
class Target:
    proc: subprocess.Popen[bytes]
    url: str
    dsn: str
    app: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _env(dsn: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CONN_MAX_AGE")}
    return {**env, "DATABASE_URL": dsn, **extra}


@contextmanager
def running(module: str, variant: str, dsn: str, app: str, ready: str, tmp_path: Path, **env: str) -> Iterator[Target]:
    full_env = _env(dsn, env)
    setup = subprocess.run(
        [sys.executable, "-m", f"tests.targets.{module}", "setup"],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert setup.returncode == 0, f"{module} setup failed:\n{setup.stdout}\n{setup.stderr}"
    argv = [sys.executable, "-m", f"tests.targets.{module}", "--port", "{port}", "--variant", variant]
    with serving(argv, tmp_path / f"{module}-{variant}.log", ready=ready, env=full_env) as served:
        yield Target(served.proc, served.url, dsn, app, served.log)


def activity(target: Target) -> list[dict[str, Any]]:
    """The target's backends now, read in autocommit on a fresh connection (never a stale snapshot)."""
    with psycopg.connect(target.dsn, autocommit=True, application_name="targets-observer") as conn:
        cur = conn.execute(
            "SELECT pid, state, query, state_change,"
            " (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.mode = 'AccessShareLock'"
            "  AND l.relation IS NOT NULL AND l.granted) AS share_locks"
            " FROM pg_stat_activity a"
            " WHERE backend_type = 'client backend' AND datname = current_database() AND application_name = %s"
            " ORDER BY pid",
            (target.app,),
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def burst(
    target: Target,
    paths: list[str],
    *,
    timeout: float,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> list[int | str]:
    """All ``paths`` at once; each answer's status code, or the name of the error."""

    async def one(client: httpx.AsyncClient, path: str) -> int | str:
        try:
            return (await client.request(method, target.url + path, headers=headers, json=json)).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    async def main() -> list[int | str]:
        limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            return list(await asyncio.gather(*(one(client, p) for p in paths)))

    return asyncio.run(main())


def probe(target: Target, path: str, timeout: float, **kwargs: Any) -> int | str:
    try:
        return httpx.request(kwargs.pop("method", "GET"), target.url + path, timeout=timeout, **kwargs).status_code
    except httpx.TimeoutException:
        return "timeout"


def count(results: list[int | str], value: int | str) -> int:
    return sum(1 for r in results if r == value)


def stop_cleanly(target: Target) -> None:
    """The correct variants close their pools on SIGTERM: a quick exit, and nothing left behind."""
    returncode, took = stop(target.proc)
    assert returncode in (0, -signal.SIGTERM), target.log_text()  # uvicorn re-raises SIGTERM after shutdown
    assert took < 5, f"took {took:.1f} s to stop"
    assert "Traceback" not in target.log_text(), target.log_text()
    time.sleep(0.3)
    assert activity(target) == []


# --- aiohttp + asyncpg -------------------------------------------------------------------------

AIOHTTP = "tgt-aiohttp-asyncpg"
REPORT_SQL = "SELECT count(*) AS n, coalesce(sum(quantity), 0) AS total FROM inventory_items"
ITEM_SQL = "SELECT id, sku, quantity FROM inventory_items WHERE id = $1"


def test_aiohttp_asyncpg_leaky_holds_the_whole_pool(pg: Any, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "tgt_aiohttp_leaky")
    with running("aiohttp_asyncpg", "leaky", dsn, AIOHTTP, "/healthz", tmp_path) as target:
        results = burst(target, ["/api/report"] * 20, timeout=2)
        assert count(results, 500) == 6, results  # one per pool connection (max 6) ...
        assert count(results, "ReadTimeout") == 14, results  # ... the rest wait on acquire() forever
        time.sleep(SETTLE)
        first = activity(target)
        time.sleep(1)
        second = activity(target)
        held = [r for r in second if r["state"] == "idle" and r["query"] == REPORT_SQL]
        assert len(second) == 6, second
        assert len(held) == 6, second
        assert [(r["pid"], r["state_change"]) for r in first] == [(r["pid"], r["state_change"]) for r in second]
        assert probe(target, "/api/slow?ms=10", timeout=1) == "timeout"  # hangs: no acquire timeout
        assert probe(target, "/api/items", timeout=1, headers=AUTH) == "timeout"
        assert probe(target, "/healthz", timeout=1) == 200  # no database: still answers


def test_aiohttp_asyncpg_correct_releases_before_the_500(pg: Any, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "tgt_aiohttp_correct")
    with running("aiohttp_asyncpg", "correct", dsn, AIOHTTP, "/healthz", tmp_path) as target:
        assert len(activity(target)) == 2  # min_size
        results = burst(target, ["/api/report"] * 20, timeout=5)
        assert count(results, 500) == 20, results
        time.sleep(SETTLE)
        rows = activity(target)
        assert len(rows) == 6, rows  # the pool grew to max_size under 20 clients and stays there
        assert [r["query"] for r in rows] == [ASYNCPG_RESET] * 6, rows
        assert [r["state"] for r in rows] == ["idle"] * 6, rows
        assert probe(target, "/api/slow?ms=50", timeout=2) == 200
        assert probe(target, "/api/report", timeout=2) == 500  # served: the error is the app's own

        # /api/items: bearer token, and N+1 queries with the connection idle between them
        assert probe(target, "/api/items", timeout=2) == 401
        seen: list[dict[str, Any]] = []

        async def items_while_watching() -> int:
            async with httpx.AsyncClient(timeout=5, headers=AUTH) as client:
                request = asyncio.create_task(client.get(target.url + "/api/items"))
                for _ in range(8):
                    await asyncio.sleep(0.03)
                    seen.extend(await asyncio.to_thread(activity, target))
                return (await request).status_code

        assert asyncio.run(items_while_watching()) == 200
        mid_request = [r for r in seen if r["state"] == "idle" and r["query"] == ITEM_SQL]
        assert mid_request, seen  # looks exactly like a held connection, while the request runs
        time.sleep(0.3)
        assert [r["query"] for r in activity(target) if r["query"] == ITEM_SQL] == []
        stop_cleanly(target)


# --- Starlette + psycopg_pool ------------------------------------------------------------------

STARLETTE = "tgt-starlette-psycopg"


def test_starlette_psycopg_leaky_exhausts_the_reader_pool_invisibly(pg: Any, tmp_path: Path) -> None:
    """The leaked getconn() connection is dropped on return and closed by refcounting: the pool
    still counts it checked out, pg_stat_activity loses it. Only the probe sees the leak."""
    dsn = fresh_database(pg, "tgt_starlette_leaky")
    with running("starlette_psycopg", "leaky", dsn, STARLETTE, "/", tmp_path) as target:
        before = {r["pid"] for r in activity(target)}
        assert len(before) == 8  # two fixed-size pools of 4
        results = burst(target, [f"/users/{1000 + i}" for i in range(20)], timeout=6)
        assert count(results, 404) == 4, results  # one per reader connection ...
        assert count(results, 500) == 16, results  # ... then getconn() times out after 3 s
        time.sleep(SETTLE)
        rows = activity(target)
        # the 4 leaked readers are gone; what is left is the 4 writers, never used (no query yet)
        assert len(rows) == 4, rows
        assert {r["pid"] for r in rows} < before, rows
        assert [(r["state"], r["query"]) for r in rows] == [("idle", "")] * 4, rows
        assert probe(target, "/users", timeout=1) == "timeout"  # would be a 500 after 3 s
        assert probe(target, "/users/1", timeout=5) == 500
        assert probe(target, "/orders", timeout=2, method="POST", json={"user_id": 1, "amount": 3}) == 201
        assert probe(target, "/", timeout=1) == 200


def test_starlette_psycopg_correct_returns_and_resets(pg: Any, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "tgt_starlette_correct")
    with running("starlette_psycopg", "correct", dsn, STARLETTE, "/", tmp_path) as target:
        results = burst(target, [f"/users/{1000 + i}" for i in range(20)], timeout=6)
        assert count(results, 404) == 20, results
        orders = burst(target, ["/orders"] * 6, timeout=6, method="POST", json={"user_id": 2, "amount": 7})
        assert count(orders, 201) == 6, orders
        time.sleep(SETTLE)
        rows = activity(target)
        assert len(rows) == 8, rows  # fixed size: the count never moves
        assert [r["state"] for r in rows] == ["idle"] * 8, rows
        queries = [r["query"] for r in rows]
        assert count(queries, "DISCARD ALL") == 4, rows  # reader: reset on return
        # writer: no reset; connection() committed the INSERT, unused ones have no query yet
        assert 1 <= count(queries, "COMMIT") <= 4, rows
        assert count(queries, "COMMIT") + count(queries, "") == 4, rows
        assert probe(target, "/users/1", timeout=2) == 200
        assert probe(target, "/users", timeout=2) == 200
        stop_cleanly(target)


# --- FastAPI, sync endpoints, sync SQLAlchemy ----------------------------------------------------

SYNC = "tgt-sync-fastapi"
PRODUCT_SQL_START = "SELECT catalog_products.id, catalog_products.title, catalog_products.price_cents"


def test_sync_fastapi_leaky_sessions_idle_in_transaction(pg: Any, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "tgt_sync_leaky")
    with running("sync_fastapi", "leaky", dsn, SYNC, "/ping", tmp_path) as target:
        results = burst(target, [f"/products/{1000 + i}" for i in range(20)], timeout=6)
        assert count(results, 404) == 10, results  # pool_size 5 + max_overflow 5 ...
        assert count(results, 500) == 10, results  # ... then QueuePool limit after pool_timeout 3 s
        time.sleep(SETTLE)
        first = activity(target)
        time.sleep(1)
        rows = activity(target)
        held = [r for r in rows if r["state"] == "idle in transaction" and r["query"].startswith(PRODUCT_SQL_START)]
        assert len(rows) == 10, rows
        assert len(held) == 10, rows
        assert [r["share_locks"] >= 1 for r in held] == [True] * 10, rows  # AccessShareLock on the table
        assert [(r["pid"], r["state_change"]) for r in first] == [(r["pid"], r["state_change"]) for r in rows]
        assert probe(target, "/health", timeout=1) == "timeout"  # its SELECT 1 waits for the pool
        assert probe(target, "/products", timeout=5) == 500
        assert probe(target, "/ping", timeout=1) == 200


def test_sync_fastapi_correct_closes_every_session(pg: Any, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "tgt_sync_correct")
    with running("sync_fastapi", "correct", dsn, SYNC, "/ping", tmp_path) as target:
        results = burst(target, [f"/products/{1000 + i}" for i in range(20)], timeout=6)
        assert count(results, 404) == 20, results
        assert probe(target, "/health", timeout=2) == 200
        assert probe(target, "/products", timeout=2) == 200
        assert probe(target, "/products/3", timeout=2) == 200
        time.sleep(SETTLE)
        rows = activity(target)
        assert 1 <= len(rows) <= 5, rows  # overflow connections are closed on return
        assert [r["state"] for r in rows] == ["idle"] * len(rows), rows
        # the pool's reset is the last statement, never the health check's SELECT 1
        assert [r["query"] for r in rows] == ["ROLLBACK"] * len(rows), rows
        stop_cleanly(target)


# --- Django over ASGI ----------------------------------------------------------------------------

DJANGO = "tgt-django-asgi"
NOTES_SQL_START = 'SELECT "dj_notes"."id" AS "id", "dj_notes"."title" AS "title" FROM "dj_notes"'


def test_django_asgi_persistent_connections_pile_up(pg: Any, tmp_path: Path) -> None:
    """CONN_MAX_AGE=60 under ASGI: every request's thread opens its own connection and keeps it."""
    dsn = fresh_database(pg, "tgt_django_leaky")
    with running("django_asgi", "leaky", dsn, DJANGO, "/health/", tmp_path) as target:
        assert activity(target) == []
        results = burst(target, ["/items/"] * 20, timeout=6)
        assert count(results, 200) == 20, results
        time.sleep(SETTLE)
        first = activity(target)
        time.sleep(SETTLE)
        rows = activity(target)
        kept = [r for r in rows if r["state"] == "idle" and r["query"].startswith(NOTES_SQL_START)]
        assert len(rows) >= 5, rows  # measured 20: one per request (a cyclic GC run may close some)
        assert len(kept) == len(rows), rows
        assert [r["pid"] for r in first] == [r["pid"] for r in rows]  # they stay after traffic
        assert probe(target, "/items/", timeout=2) == 200  # still serves (until max_connections)
        assert len(activity(target)) == len(rows) + 1  # and that request left one more behind


def test_django_asgi_conn_max_age_0_closes_after_each_request(pg: Any, tmp_path: Path) -> None:
    dsn = fresh_database(pg, "tgt_django_correct")
    with running("django_asgi", "correct", dsn, DJANGO, "/health/", tmp_path, CONN_MAX_AGE="60") as target:
        results = burst(target, ["/items/"] * 20, timeout=6)  # the env's 60 is overridden by the variant
        assert count(results, 200) == 20, results
        time.sleep(SETTLE)
        assert activity(target) == []
        assert probe(target, "/items/", timeout=2) == 200
        time.sleep(0.3)
        assert activity(target) == []
        stop_cleanly(target)
