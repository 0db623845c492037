"""Your service, not ours: ``--serve`` on services drainwatch has never seen, no selector, embedded PostgreSQL.

Each target in tests/targets runs leaky and correct; the leaky one must be LEAK with the
leaking route most likely, the correct one PASS, with zero exceptions in Locust's users.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import psutil
import pytest

from tests.helpers import REPO, config, drainwatch, needs_system_pg, summary

pytestmark = pytest.mark.slow


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
    versions = run["target"]["versions"]  # what the service's process imported, not what is installed
    assert versions["aiohttp"] and versions["asyncpg"]
    assert "flask" not in versions and "fastapi" not in versions  # installed beside it (Locust's), never imported
    if variant == "leaky":
        assert found["leaked"] >= 4 and found["leaked_by_kind"]["held"] >= 4
        likely = found["attribution"]["likely"]
        assert next(iter(likely)) == "error GET /api/report", likely
        assert any("FROM inventory_items" in statement for statement in found["attribution"]["statements"])
        # With no change to the service: the line that took them (the acquire that is never released)
        source = (REPO / "tests" / "targets" / "aiohttp_asyncpg.py").read_text().splitlines()
        start = next(i for i, text in enumerate(source) if text.startswith("async def report_leaky("))
        line = next(i for i, text in enumerate(source[start:], start + 1) if "conn = await pool.acquire()" in text)
        assert found["checkout_sites"] == {
            f"tests/targets/aiohttp_asyncpg.py:{line} in report_leaky()": found["leaked"]
        }
    else:
        assert found["leaked"] == 0
        assert [c["passed"] for c in found["checks"] if c["name"] == "shutdown"] == [True]


SYNC = '[[endpoints]]\npath = "/products"\n\n[chaos.error]\nrequest = "GET /products/999999"\nexpect = [404]\n\n[probe]\npath = "/health"\n'


@pytest.mark.parametrize(("variant", "verdict", "code"), [("leaky", "LEAK", 1), ("correct", "PASS", 0)])
def test_sync_fastapi_in_a_thread_pool_with_a_select_one_health_check(
    tmp_path: Path, variant: str, verdict: str, code: int
) -> None:
    folder = config(tmp_path, "sync_fastapi", variant, SYNC)
    proc = drainwatch("run", "--run-id", variant, "-q", cwd=folder, timeout=240)
    assert proc.returncode == code, proc.stdout + proc.stderr
    found = summary(folder, variant)
    assert found["verdict"] == verdict, found["reasons"]
    assert exceptions(folder, variant) == 0
    if variant == "leaky":
        # Abandoned sessions sit in reference cycles: the garbage collector frees some during the run, at
        # moments nobody picks (CI saw it free every one before settle ended). What the leak left is the
        # sessions still idle in transaction and those SQLAlchemy's cleanup took back, logged as it did.
        still = found["idle_in_transaction"]["count"]
        assert still + found["service_warnings"].get("gc_cleanup", 0) >= 1, found["reasons"]
        assert not still or "idle_in_transaction" in found["evidence"]
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
    # Each request's connection stays open until the garbage collector frees its wrapper, at moments
    # nobody picks: the baseline already holds warm-up's and the final count can fall under it. What is
    # left served one request each (single_use); when so many pile up that the server is full, that says it.
    assert found["verdict"] == "LEAK", found["reasons"]
    assert found["evidence"] and set(found["evidence"]) <= {"single_use", "server_limit", "drain"}, found["reasons"]


def test_django_without_persistent_connections_passes(tmp_path: Path) -> None:
    folder = config(tmp_path, "django_asgi", "correct", '[[endpoints]]\npath = "/items/"\n')
    proc = drainwatch("run", "--run-id", "correct", "-q", cwd=folder, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(folder, "correct")["verdict"] == "PASS"


DJANGO = '[[endpoints]]\npath = "/items/"\n\n[chaos.error]\nrequest = "GET /items/999999/"\nexpect = [404]\n'


@pytest.mark.parametrize(
    ("variant", "verdict"),
    [("leaky --gc-off", "LEAK"), ("leaky", "LEAK"), ("correct", "PASS")],  # CONN_MAX_AGE 60, and 0 (the fix)
)
def test_django_under_gunicorn_ending_in_commit_on_a_roomy_server(tmp_path: Path, variant: str, verdict: str) -> None:
    # gunicorn -k uvicorn_worker.UvicornWorker, 2 workers, ATOMIC_REQUESTS: every leaked connection ends in
    # COMMIT (ROLLBACK on the 404), like a pool's reset; 1,000 server slots, so the server never fills.
    # --gc-off: what leaked stays open (as in a large heap, where a full collection is rare); without it the
    # garbage collector closes them at moments nobody picks, maybe every one before settle ends.
    folder = config(tmp_path, "django_asgi", f"{variant} --server gunicorn --atomic", DJANGO)
    # 300 slots with --gc-off, so that a machine busy with other tests still fills them in the load's time
    slots = "300" if variant == "leaky --gc-off" else "1000"
    proc = drainwatch(
        "run", "--run-id", "r", "-q", "--embedded-max-connections", slots, "--dev-mode", cwd=folder, timeout=240
    )
    found = summary(folder, "r")
    assert found["verdict"] == verdict, found["reasons"]
    assert proc.returncode == (0 if variant == "correct" else 1), proc.stdout + proc.stderr
    assert found["server"]["full"] is (variant == "leaky --gc-off")  # nothing ever closed fills the server
    run_dir = folder / "runs" / "r"
    run = json.loads((run_dir / "run.json").read_text())
    assert {"django", "gunicorn", "uvicorn", "psycopg"} <= set(run["target"]["versions"])  # the stack it ran
    # Nothing of the service outlives the run: gunicorn's master and each worker wrote their stack.
    tree = [int(p.stem.split("-")[1]) for p in (run_dir / "logs" / "stack").glob("stack-*.json")]
    assert len(tree) >= 3, tree  # the master and 2 workers
    assert not [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    if variant == "correct":
        # a connection lives as long as its request: the collector may catch one or two, not one per request
        reuse = found["reuse"]
        assert found["leaked"] == 0 and reuse["never_reused"] == 0, reuse
        assert reuse["opened"] <= max(5, reuse["requests"] // 20), reuse  # a slow machine's requests last longer
        return
    # Connections opened per request during the load, outliving it: no pool does that.
    assert "single_use" in found["evidence"] and found["reuse"]["opened"] >= 10
    # The diagnosis speaks Django (the stack its processes imported), not SQLAlchemy or asyncpg.
    said = json.dumps(found["diagnosis"])
    assert "CONN_MAX_AGE = 0 under ASGI" in said and "session_factory" not in said and "acquire(" not in said
    if variant == "leaky":  # the collector closed some or all: psycopg said so in the log
        assert "leak_warnings" in found["evidence"] and found["service_warnings"]["connection_dropped"] >= 1
        return
    assert found["leaked"] >= 10 and {"single_use", "drain"} <= set(found["evidence"])
    assert found["leaked_by_kind"]["single_use"] >= 10 and found["reuse"]["never_reused"] >= 10
    with open(run_dir / "lingering.csv", newline="") as handle:
        kinds = [row["kind"] for row in csv.DictReader(handle)]
    assert kinds.count("never_reused") == found["reuse"]["never_reused"] == len(found["never_reused"])
    # Every route leaks: each connection is named by the request that opened it, ROLLBACK by the 404.
    likely = found["attribution"]["likely"]
    assert likely.get("steady GET /items/", 0) >= 5 and likely.get("error GET /items/999999/", 0) >= 1, likely
    reason = next(r for r in found["reasons"] if "connection(s) opened for" in r)
    assert f"{found['reuse']['never_reused']} still open served one request and were never reused" in reason


def test_django_under_wsgi_reuses_its_persistent_connections(tmp_path: Path) -> None:
    # gunicorn's sync workers: one thread serves request after request on its one persistent connection.
    folder = config(tmp_path, "django_asgi", "leaky --server wsgi --atomic", DJANGO)
    proc = drainwatch("run", "--run-id", "wsgi", "-q", "--embedded-max-connections", "1000", cwd=folder, timeout=240)
    found = summary(folder, "wsgi")
    assert found["verdict"] == "PASS", found["reasons"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert found["reuse"]["opened"] <= 4 and found["reuse"]["never_reused"] == 0  # 2 workers, a connection each


def test_a_leak_that_fills_the_server_is_leak_not_error(tmp_path: Path) -> None:
    # CONN_MAX_AGE = None: every request keeps its connection; a 20-connection server runs out.
    folder = config(
        tmp_path, "django_asgi", "leaky", '[[endpoints]]\npath = "/items/"\n', 'env = { CONN_MAX_AGE = "none" }\n'
    )
    proc = drainwatch(
        "run", "--run-id", "full", "-q", "--embedded-max-connections", "20", "--users", "20", cwd=folder, timeout=240
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = summary(folder, "full")
    assert found["verdict"] == "LEAK" and "server_limit" in found["evidence"], found["reasons"]
    server = found["server"]
    assert server["max_connections"] == 20 and server["full"] is True
    assert server["refusals"] >= 1  # "sorry, too many clients already" in the embedded server's log
    assert (
        folder / "runs" / "full" / "lingering.csv"
    ).is_file()  # the snapshot was taken on drainwatch's own connection
    assert "the server, not the pool, ran out first" in json.dumps(found["diagnosis"])


@needs_system_pg  # trust auth: it takes any password, so one can be handed on and looked for
def test_the_password_handed_to_the_service_never_reaches_the_run_folder(tmp_path: Path) -> None:
    serve = (
        f"sh -c 'echo starting with $DATABASE_URL; exec {sys.executable} -m tests.targets.aiohttp_asyncpg "
        "--port {port} --variant correct'"
    )
    proc = drainwatch(
        "run",
        "--serve",
        serve,
        "--setup",
        f"{sys.executable} -m tests.targets.aiohttp_asyncpg setup",
        "--dsn",
        "postgresql://postgres:Sup3rSecret@127.0.0.1:5432/test",
        "-e",
        "GET /api/items",
        "-H",
        "Authorization: Bearer secret-token",
        "--out",
        str(tmp_path),
        "--run-id",
        "pw",
        "--warmup",
        "2s",
        "--baseline",
        "1s",
        "--duration",
        "4s",
        "--settle",
        "4s",
        "-q",
        cwd=REPO,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (tmp_path / "pw" / "logs" / "target.log").read_text()
    assert "starting with postgresql://postgres:***@127.0.0.1:5432/test" in log
    written = [p for p in (tmp_path / "pw").rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert "Sup3rSecret" not in path.read_text(errors="replace"), path
    assert "secret-token" not in (tmp_path / "pw" / "run.json").read_text()  # the auth header is redacted too


def test_isolate_restarts_a_served_service_and_names_the_leaking_kind(tmp_path: Path) -> None:
    folder = config(tmp_path, "aiohttp_asyncpg", "leaky", AIOHTTP[1], AIOHTTP[0])
    proc = drainwatch(
        "run",
        "--run-id",
        "iso",
        "-q",
        "--isolate",
        "--duration",
        "5s",
        "--settle",
        "25s",
        "--users",
        "4",
        cwd=folder,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = json.loads((folder / "runs" / "iso" / "run.json").read_text())
    isolation = run["isolation"]
    assert list(isolation) == ["steady", "disconnect", "error"]
    assert isolation["error"]["verdict"] == "LEAK"
    assert isolation["steady"]["verdict"] == "PASS" and isolation["disconnect"]["verdict"] == "PASS"
    assert run["target"]["cycles_share_state"] is False  # restarted between kinds
    pids = (folder / "runs" / "iso" / "logs" / "target.pid").read_text()
    assert int(pids) == run["processes"]["target"]  # the selection followed the restarted service


def test_one_command_names_the_chaos_requests_on_the_command_line(tmp_path: Path) -> None:
    """No drainwatch.toml: --endpoint, --header and --chaos say it all, and the verdict says what it did not test."""
    module = f"{sys.executable} -m tests.targets.aiohttp_asyncpg"
    proc = drainwatch(
        "run", "--serve", f"{module} --port {{port}} --variant leaky", "--setup", f"{module} setup",
        "-e", "GET /api/items", "-H", "Authorization: Bearer secret-token", "--chaos", "error=GET /api/report 500",
        "--warmup", "2s", "--baseline", "2s", "--duration", "8s", "--settle", "8s", "--users", "10",
        "--out", str(tmp_path / "runs"), "--run-id", "cli", "-q", cwd=REPO, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = summary(tmp_path, "cli")
    assert found["verdict"] == "LEAK" and found["load_kinds"]["error"]["requests"] >= 1
    assert found["attribution"]["likely"] and next(iter(found["attribution"]["likely"])) == "error GET /api/report"
    assert found["reasons"][-1].startswith("not tested: timeout, which this service has no request for")
    run = json.loads((tmp_path / "runs" / "cli" / "run.json").read_text())
    assert run["config"]["traffic"]["error"] == "GET /api/report (headers: Authorization redacted)"
    assert run["config"]["mix"] == {
        "steady": 4, "disconnect": 2, "error": 1,
    }  # fmt: skip
