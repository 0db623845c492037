"""Behind a real PgBouncer (Debian's package): ``--via-pgbouncer`` between a served service and PostgreSQL
(with ``--fault pooler-kill`` and ``pg-pause``), and ``--pgbouncer`` for one the user runs (the test starts it)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from drainwatch.provision.pgbouncer import Pooler, pgbouncer
from drainwatch.provision.postgres import Database
from tests.conftest import fresh_database
from tests.helpers import config, drainwatch, leftovers, summary

HAVE_PGBOUNCER = shutil.which("pgbouncer") is not None or os.access("/usr/sbin/pgbouncer", os.X_OK)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_PGBOUNCER, reason="pgbouncer is not installed (apt-get install pgbouncer)"),
]

BODY = '[[endpoints]]\npath = "/api/items"\n\n[chaos.error]\nrequest = "GET /api/report"\nexpect = [500]\n'
HEADERS = 'headers = { Authorization = "Bearer secret-token" }\n'
ADMIN = "postgresql://pgbouncer@127.0.0.1:6432/pgbouncer"


@pytest.mark.parametrize(("variant", "verdict", "code"), [("leaky", "LEAK", 1), ("correct", "PASS", 0)])
def test_a_served_service_behind_pgbouncer_in_session_mode(
    tmp_path: Path, variant: str, verdict: str, code: int
) -> None:
    folder = config(tmp_path, "aiohttp_asyncpg", variant, BODY, HEADERS)
    proc = drainwatch("run", "--via-pgbouncer", "session", "--run-id", variant, "-q", cwd=folder, timeout=240)
    assert proc.returncode == code, proc.stdout + proc.stderr
    found = summary(folder, variant)
    assert found["verdict"] == verdict, found["reasons"]
    run_dir = folder / "runs" / variant
    run = json.loads((run_dir / "run.json").read_text())
    # pg_stat_activity sees the pooler's server connections: they are selected by its sockets
    assert run["target"]["selected_by"].startswith("the sockets of PgBouncer (process ")
    assert run["database"]["pgbouncer"]["mode"] == "session"
    checks = {check["name"]: check for check in found["checks"]}
    assert checks["pooler"]["passed"] and checks["pooler"]["numbers"]["cl_waiting"] == 0
    assert checks["shutdown"]["passed"]  # its server connections stay with the pooler, by design
    with open(run_dir / "pgbouncer.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["gap"] == "0"]
    assert max(int(row["cl_active"]) for row in rows) >= 1  # the service's clients, as the pooler counts them
    report = (run_dir / "report.html").read_text()
    assert "PgBouncer: cl_active, cl_waiting, sv_active and sv_idle from SHOW POOLS" in report  # its timeline panel
    assert leftovers(run_dir) == {}  # PgBouncer stopped with the rest
    if variant == "leaky":
        assert found["leaked_by_kind"]["held"] >= 4  # held server connections behind the pooler
        assert next(iter(found["attribution"]["likely"])) == "error GET /api/report"


def test_via_pgbouncer_needs_a_service_drainwatch_starts() -> None:
    url = ("--target-url", "http://127.0.0.1:9", "--dsn", "postgresql://postgres@127.0.0.1:5432/test", "-e", "GET /x")
    proc = drainwatch("run", "--via-pgbouncer", "session", *url)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: --via-pgbouncer puts a PgBouncer between a service drainwatch starts")


def test_pooler_kill_drops_every_connection_and_a_correct_service_survives_it(tmp_path: Path) -> None:
    folder = config(tmp_path, "aiohttp_asyncpg", "correct", BODY, HEADERS)
    proc = drainwatch(
        "run", "--via-pgbouncer", "session", "--fault", "pooler-kill@3s", "--run-id", "k", "-q", cwd=folder, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # its pool reconnects: no leak, still serves
    run_dir = folder / "runs" / "k"
    faults = json.loads((run_dir / "run.json").read_text())["faults"]
    assert [(f["kind"], f.get("error")) for f in faults] == [("pooler-kill", None)]
    assert faults[0]["detail"] == "PgBouncer dropped every connection to postgres"
    log = (run_dir / "logs" / "pgbouncer.log").read_text()
    assert "KILL 'postgres' command issued" in log and "RESUME 'postgres' command issued" in log


def test_pooler_faults_need_a_pooler(tmp_path: Path) -> None:
    proc = drainwatch("run", "--fault", "pooler-kill@3s", "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "add --via-pgbouncer" in proc.stderr


@pytest.fixture
def own_pgbouncer(pg: Database, tmp_path: Path) -> Iterator[tuple[str, Pooler]]:
    """A PgBouncer the test runs itself (as a user would), in front of a database of its own:
    the server's DSN, and the pooler (its admin console in ``admin_dsn``)."""
    upstream = fresh_database(pg, "pgbouncer_own")
    runner = asyncio.Runner()
    manager = pgbouncer(upstream, tmp_path / "own-pgbouncer.log", mode="session", pool_size=20)
    try:
        pooler = runner.run(manager.__aenter__())
        try:
            yield upstream, pooler
        finally:
            runner.run(manager.__aexit__(None, None, None))
    finally:
        runner.close()


def test_a_pgbouncer_the_user_runs_is_read_through_its_admin_console(
    tmp_path: Path, own_pgbouncer: tuple[str, Pooler]
) -> None:
    upstream, pooler = own_pgbouncer
    folder = config(tmp_path, "aiohttp_asyncpg", "leaky", BODY, HEADERS)
    proc = drainwatch(
        "run", "--dsn", upstream, "--pgbouncer", pooler.admin_dsn, "--run-id", "own", "-q", cwd=folder, timeout=240
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = summary(folder, "own")
    assert found["verdict"] == "LEAK", found["reasons"]
    assert found["leaked_by_kind"]["held"] >= 4  # held server connections behind the user's pooler
    run_dir = folder / "runs" / "own"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["target"]["selected_by"].startswith(f"the sockets of PgBouncer (process {pooler.pid}, session mode)")
    own = run["database"]["pgbouncer"]
    assert own["external"] and own["mode"] == "session" and own["pool_size"] == 20
    server = upstream.split("@")[1].split("/")[0]
    assert own["dsn"] == upstream.replace(server, pooler.address)  # the pooler's address, handed to the service
    assert "pgbouncer" not in run["processes"]  # not drainwatch's to stop
    checks = {check["name"]: check for check in found["checks"]}
    assert checks["pooler"]["passed"] and checks["shutdown"]["passed"], checks
    with open(run_dir / "pgbouncer.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["gap"] == "0"]
    assert max(int(row["cl_active"]) for row in rows) >= 4 and max(int(row["sv_active"]) for row in rows) >= 4
    assert "PgBouncer: cl_active, cl_waiting" in (run_dir / "report.html").read_text()
    assert leftovers(run_dir) == {}


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--via-pgbouncer", "session"], "error: --pgbouncer reads a PgBouncer you run and --via-pgbouncer starts one"),
        (["--dsn", "postgresql://u@127.0.0.1:5432/db"], "error: --pgbouncer watches the PgBouncer your service goes"),
    ],
)
def test_pgbouncer_usage_errors(tmp_path: Path, args: list[str], start: str) -> None:
    proc = drainwatch("run", "--pgbouncer", ADMIN, *args, "-o", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(start), proc.stderr


def test_pgbouncer_admin_dsn_is_checked_before_the_run(tmp_path: Path, own_pgbouncer: tuple[str, Pooler]) -> None:
    upstream, pooler = own_pgbouncer
    folder = config(tmp_path, "aiohttp_asyncpg", "correct", BODY, HEADERS)
    secret = pooler.admin_dsn.replace("drainwatch@", "drainwatch:s3cret@")
    cases = [
        (secret.replace("/pgbouncer", "/postgres"), "error: --pgbouncer names database 'postgres', not PgBouncer's"),
        (
            upstream.replace("/pgbouncer_own", "/pgbouncer").replace("postgres@", "postgres:s3cret@"),
            "PostgreSQL answers there, not PgBouncer's admin console",
        ),
        (secret.replace(pooler.address.split(":")[1], "1"), "cannot be reached"),
    ]
    for admin, expected in cases:
        proc = drainwatch("check", "--dsn", upstream, "--pgbouncer", admin, cwd=folder, timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert expected in proc.stderr and "s3cret" not in proc.stderr + proc.stdout, proc.stderr
        assert " — hint: " in proc.stderr
    assert not (folder / "runs").exists()


def test_pg_pause_stalls_the_database_and_a_correct_service_survives_it(tmp_path: Path) -> None:
    # transaction mode: PAUSE is answered once the transactions in flight end (no named prepared statements)
    folder = config(tmp_path, "aiohttp_asyncpg", "correct --no-prepare", BODY, HEADERS)
    proc = drainwatch(
        "run", "--via-pgbouncer", "transaction", "--fault", "pg-pause@3s+3s", "--run-id", "p", "-q", cwd=folder
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = summary(folder, "p")
    assert found["verdict"] == "PASS", found["reasons"]
    run_dir = folder / "runs" / "p"
    [fault] = json.loads((run_dir / "run.json").read_text())["faults"]
    assert (fault["kind"], fault.get("error")) == ("pg-pause", None), fault
    assert fault["pause_answered_s"] is not None and fault["end"] - fault["start"] >= 3.0
    assert fault["detail"].startswith("PgBouncer paused postgres for 3s")
    with open(run_dir / "pgbouncer.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["gap"] == "0"]
    during = [row for row in rows if fault["start"] + 0.5 <= float(row["t"]) <= fault["end"]]
    after = [row for row in rows if float(row["t"]) > fault["end"] + 1]
    assert max(int(row["cl_waiting"]) for row in during) >= 1  # the gap: the service's queries waited at the pooler
    assert max(int(row["cl_waiting"]) for row in after[-5:]) == 0  # and went through once it resumed
    report = (run_dir / "report.html").read_text()
    assert "pg-pause@3s+3s" in report[report.index("<h2>Injected faults</h2>") :]
    log = (run_dir / "logs" / "pgbouncer.log").read_text()
    assert "PAUSE 'postgres' command issued" in log and "RESUME 'postgres' command issued" in log
    assert leftovers(run_dir) == {}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--via-pgbouncer", "session"],
            "error: --fault pg-pause needs PgBouncer in transaction mode: in session mode",
        ),
        ([], "hint: add --via-pgbouncer transaction"),
        (
            ["--serve", "x {port}", "-e", "GET /x", "--dsn", "postgresql://u@127.0.0.1:5432/db", "--pgbouncer", ADMIN],
            "drainwatch does not inject faults into one you run (--pgbouncer)",
        ),
    ],
)
def test_pg_pause_needs_a_pgbouncer_drainwatch_starts_in_transaction_mode(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    proc = drainwatch("run", "--fault", "pg-pause@3s+2s", *args, "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert expected in proc.stderr, proc.stderr


def test_pause_is_always_resumed(own_pgbouncer: tuple[str, Pooler]) -> None:
    """Unanswered (a transaction holds the only server connection) or interrupted, PAUSE is lifted."""
    import psycopg

    from drainwatch.provision.pgbouncer import admin_command, pause_for

    _, pooler = own_pgbouncer

    async def paused() -> int:
        rows = await admin_command(pooler.admin_dsn, "SHOW DATABASES")
        return next(int(row["paused"]) for row in rows if row["name"] == pooler.database)

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(pooler.dsn) as conn:
            await conn.execute("SELECT 1")  # a transaction left open: PAUSE cannot be answered
            assert await pause_for(pooler.admin_dsn, pooler.database, 1.0) is None
            assert await paused() == 0
            await conn.rollback()
            interrupted = asyncio.ensure_future(pause_for(pooler.admin_dsn, pooler.database, 60.0))
            await asyncio.sleep(0.5)
            assert await paused() == 1
            interrupted.cancel()
            with pytest.raises(asyncio.CancelledError):
                await interrupted
            assert await paused() == 0

    asyncio.run(asyncio.wait_for(scenario(), 30))
