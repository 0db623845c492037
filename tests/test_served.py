"""Your service, not ours: ``--serve`` on services drainwatch has never seen, no selector, embedded PostgreSQL.

Each target in tests/targets runs leaky and correct; the leaky one must be LEAK with the
leaking route most likely, the correct one PASS, with zero exceptions in Locust's users.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from tests.helpers import drainwatch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PHASES = '[load]\nwarmup = "2s"\nbaseline = "2s"\nduration = "8s"\nsettle = "8s"\nusers = 10\nspawn_rate = 10\n'


def config(tmp_path: Path, target: str, variant: str, body: str, env: str = "") -> Path:
    """A drainwatch.toml that serves ``tests.targets.<target>`` from the repository."""
    module = f"{sys.executable} -m tests.targets.{target}"
    (tmp_path / "drainwatch.toml").write_text(
        f'[target]\ncommand = "{module} --port {{port}} --variant {variant}"\nsetup = "{module} setup"\n'
        f'cwd = "{REPO}"\n{env}\n{PHASES}\n[output]\nout = "runs"\n\n{body}'
    )
    return tmp_path


def summary(folder: Path, run_id: str) -> dict:
    return json.loads((folder / "runs" / run_id / "summary.json").read_text())


def exceptions(folder: Path, run_id: str) -> int:
    with open(folder / "runs" / run_id / "locust_exceptions.csv", newline="") as handle:
        return sum(int(row["Count"]) for row in csv.DictReader(handle))


AIOHTTP = (
    'headers = { Authorization = "Bearer secret-token" }\n',
    '[[endpoints]]\npath = "/api/items"\n\n[chaos.error]\nrequest = "GET /api/report"\nexpect = [500]\n',
)


@pytest.mark.parametrize(("variant", "verdict", "code"), [("leaky", "LEAK", 1), ("correct", "PASS", 0)])
def test_aiohttp_asyncpg_behind_an_auth_header(tmp_path: Path, variant: str, verdict: str, code: int) -> None:
    folder = config(tmp_path, "aiohttp_asyncpg", variant, AIOHTTP[1], AIOHTTP[0])
    proc = drainwatch("run", "--run-id", variant, "-q", cwd=folder, timeout=240)
    assert proc.returncode == code, proc.stdout + proc.stderr
    found = summary(folder, variant)
    assert found["verdict"] == verdict, found["reasons"]
    assert exceptions(folder, variant) == 0
    run = json.loads((folder / "runs" / variant / "run.json").read_text())
    assert run["target"]["selected_by"].startswith("the sockets of process ")
    assert run["preflight"]["probe"]["backends"] >= 1  # the probe was seen reaching the database
    if variant == "leaky":
        assert found["leaked"] >= 4 and found["leaked_by_kind"]["held"] >= 4
        likely = found["attribution"]["likely"]
        assert next(iter(likely)) == "error GET /api/report", likely
        assert any("FROM inventory_items" in statement for statement in found["attribution"]["statements"])
    else:
        assert found["leaked"] == 0
        assert [c["passed"] for c in found["checks"] if c["name"] == "shutdown"] == [True]


SYNC = '[[endpoints]]\npath = "/products"\n\n[chaos.error]\nrequest = "GET /products/999999"\nexpect = [404]\n\n[probe]\npath = "/health"\n'


@pytest.mark.parametrize(("variant", "verdict", "code"), [("leaky", "LEAK", 1), ("correct", "PASS", 0)])
def test_sync_fastapi_in_a_thread_pool_with_a_select_one_health_check(tmp_path: Path, variant: str, verdict: str, code: int) -> None:
    folder = config(tmp_path, "sync_fastapi", variant, SYNC)
    proc = drainwatch("run", "--run-id", variant, "-q", cwd=folder, timeout=240)
    assert proc.returncode == code, proc.stdout + proc.stderr
    found = summary(folder, variant)
    assert found["verdict"] == verdict, found["reasons"]
    assert exceptions(folder, variant) == 0
    if variant == "leaky":
        assert found["idle_in_transaction"]["count"] >= 3
        assert "idle_in_transaction" in found["evidence"]
    else:
        assert found["idle_in_transaction"]["count"] == 0 and found["leaked"] == 0


STARLETTE = '[[endpoints]]\npath = "/users"\n\n[chaos.error]\nrequest = "GET /users/999999"\nexpect = [404]\n'


def test_starlette_psycopg_two_pools_one_application_name(tmp_path: Path) -> None:
    # Dropped getconn() connections are mostly closed by refcounting: the probe sees the exhausted reader pool.
    folder = config(tmp_path, "starlette_psycopg", "leaky", STARLETTE)
    proc = drainwatch("run", "--run-id", "leaky", "-q", cwd=folder, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = summary(folder, "leaky")
    assert found["verdict"] == "LEAK" and "probe" in found["evidence"]
    assert exceptions(folder, "leaky") == 0


def test_starlette_psycopg_correct_passes(tmp_path: Path) -> None:
    folder = config(tmp_path, "starlette_psycopg", "correct", STARLETTE)
    proc = drainwatch("run", "--run-id", "correct", "-q", cwd=folder, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(folder, "correct")["verdict"] == "PASS"


def test_django_persistent_connections_under_asgi(tmp_path: Path) -> None:
    folder = config(tmp_path, "django_asgi", "leaky", '[[endpoints]]\npath = "/items/"\n')
    proc = drainwatch("run", "--run-id", "leaky", "-q", cwd=folder, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = summary(folder, "leaky")
    # Each request's connection stays open until the garbage collector frees its wrapper: some are always left.
    assert found["verdict"] == "LEAK" and found["leaked"] >= 1


def test_django_without_persistent_connections_passes(tmp_path: Path) -> None:
    folder = config(tmp_path, "django_asgi", "correct", '[[endpoints]]\npath = "/items/"\n')
    proc = drainwatch("run", "--run-id", "correct", "-q", cwd=folder, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(folder, "correct")["verdict"] == "PASS"
