"""The traps a new user falls into on a service that is not the demo, each its own test.

A default that does not fit the user's service is never a LEAK, a load that tested nothing
is never a PASS, and the fix is named in one line.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, config, drainwatch, summary

pytestmark = pytest.mark.slow

AIOHTTP = [
    "--serve",
    f"{sys.executable} -m tests.targets.aiohttp_asyncpg --port {{port}} --variant correct",
    "--setup",
    f"{sys.executable} -m tests.targets.aiohttp_asyncpg setup",
    "-H",
    "Authorization: Bearer secret-token",
]
QUICK = ["--warmup", "2s", "--baseline", "1s", "--duration", "6s", "--settle", "6s", "--users", "5", "-q"]


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, Path]:
    proc = drainwatch("run", "--out", str(tmp_path / "runs"), "--run-id", "r", *args, cwd=REPO, timeout=240, env=env)
    return proc.returncode, proc.stdout + proc.stderr, tmp_path / "runs" / "r"


def test_the_readme_command_line_form_on_a_service_that_is_not_the_demo(tmp_path: Path) -> None:
    code, out, folder = run(
        tmp_path,
        "--target-url",
        "http://127.0.0.1:8000",
        "--dsn",
        "postgresql://postgres@127.0.0.1:5432/test",
        "--app-name",
        "myapp%",
    )
    assert code == 2
    assert out.strip() == (
        "error: drainwatch does not know which requests your service serves — hint: name them: "
        '--endpoint "GET /items" (repeatable), or [[endpoints]] in drainwatch.toml'
    )
    assert not folder.exists()


def test_isolate_against_a_url_needs_no_restart(tmp_path: Path) -> None:
    code, out, folder = run(
        tmp_path,
        "--target-url",
        "http://127.0.0.1:8000",
        "--dsn",
        "postgresql://postgres@127.0.0.1:5432/test",
        "-e",
        "GET /items",
        "--isolate",
    )
    assert code == 2 and not folder.exists()
    assert out.strip() == (
        "error: --isolate restarts the service between cycles, and drainwatch cannot restart one given by "
        "--target-url — hint: use --serve so drainwatch starts it, or add --no-restart (the cycles then "
        "share its state)"
    )


def test_a_route_the_service_does_not_serve_stops_the_run_before_load(tmp_path: Path) -> None:
    code, out, folder = run(tmp_path, *AIOHTTP, "-e", "GET /api/nope", *QUICK)
    assert code == 2, out
    assert out.strip() == (
        "error: GET /api/nope (steady) answered 404 before any load: the service does not serve it — "
        "hint: fix the path in [[endpoints]] or --endpoint"
    )
    assert "warmup" not in json.loads((folder / "run.json").read_text())["phases"]


def test_a_probe_that_never_touches_the_database_is_refused(tmp_path: Path) -> None:
    code, out, folder = run(tmp_path, *AIOHTTP, "-e", "GET /api/items", "--probe-path", "/healthz", *QUICK)
    assert code == 2, out
    assert out.strip() == (
        "error: the probe GET /healthz answered 200 without any of the service's backends running a "
        "statement: it would answer even with the pool exhausted — hint: probe a route that queries "
        "the database: --probe-path PATH (or [probe] path)"
    )


def test_an_error_kind_that_never_errs_is_error_not_pass(tmp_path: Path) -> None:
    body = '[[endpoints]]\npath = "/api/items"\n\n[chaos.error]\nrequest = "GET /api/slow?ms=5"\nexpect = [500]\n'
    folder = config(
        tmp_path, "aiohttp_asyncpg", "correct", body, 'headers = { Authorization = "Bearer secret-token" }\n'
    )
    proc = drainwatch("run", "--run-id", "r", "-q", cwd=folder, timeout=240)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    found = summary(folder, "r")
    assert found["verdict"] == "ERROR" and found["evidence"] == ["load_invalid"]
    assert found["reasons"][0].startswith("the error kind tested nothing: ")
    assert "never delivered the chaos" in found["reasons"][0] and "no chaos: HTTP 200" in found["reasons"][0]


def test_a_disconnect_backlog_on_a_healthy_service_is_saturation_not_a_leak(tmp_path: Path) -> None:
    # aiohttp does not cancel a handler whose client left: the abandoned pg_sleep()s run on. Each holds
    # one of the pool's 6 connections for 3 s, so the backlog outlasts Locust's own stop (up to 5 s
    # for requests still in flight); 1 s sleeps could drain within it on a busy machine (CI saw it).
    # Meanwhile the steady requests wait behind the backlog: the service stopped serving (SATURATED).
    body = '[[endpoints]]\npath = "/api/items"\n\n[chaos.disconnect]\nrequest = "GET /api/slow?ms=3000"\nafter_ms = 0\n'
    folder = config(
        tmp_path, "aiohttp_asyncpg", "correct", body, 'headers = { Authorization = "Bearer secret-token" }\n'
    )
    proc = drainwatch(
        "run", "--run-id", "r", "-q", "--mix", "steady=1,disconnect=3", "--settle", "40s", cwd=folder, timeout=300
    )
    found = summary(folder, "r")
    assert found["verdict"] == "SATURATED" and found["leaked"] == 0, found["reasons"]
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert found["evidence"] == ["saturation"] and found["schema"] == "drainwatch.summary/2"
    assert found["reasons"][0].startswith("the service stopped serving under the load: ")
    assert "abandoned work held the pool" in found["reasons"][0]
    assert found["zombie"]["peak_active"] >= 1  # the work went on after the clients had gone
    slow = found["hangups"]["disconnect GET /api/slow"]
    assert slow["hangups"] >= 1 and slow["cancelled"] == 0  # nothing cancelled the abandoned pg_sleep()s
    assert slow["kept_working"] >= 1  # ...which ran on with no request in flight


SLOW = '[[endpoints]]\npath = "/api/slow?ms=3000"\n'


@pytest.mark.parametrize(("users", "verdict", "code"), [("20", "SATURATED", 4), ("2", "PASS", 0)])
def test_a_request_that_holds_its_connection_too_long_saturates_a_healthy_pool(
    tmp_path: Path, users: str, verdict: str, code: int
) -> None:
    # A pool of 6, each request holding a connection for 3 s: 20 users wait longer than their 5 s timeout,
    # every connection comes back after the load; 2 users are served.
    folder = config(
        tmp_path, "aiohttp_asyncpg", "correct", SLOW, 'headers = { Authorization = "Bearer secret-token" }\n'
    )
    load = ("--mix", "steady=1", "--users", users, "--settle", "40s")  # settle: the queued work drains
    proc = drainwatch("run", "--run-id", "r", "-q", *load, cwd=folder, timeout=300)
    found = summary(folder, "r")
    assert found["verdict"] == verdict, found["reasons"]
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert found["leaked"] == 0
    saturation = next(c for c in found["checks"] if c["name"] == "saturation")
    # How long each request held its connection, from the pool view's checkouts (no code change: the
    # bootstrap hooked asyncpg's pool and aiohttp's handler), and what that kept busy: Little's law.
    slow = found["holds"]["GET /api/slow"]
    assert 2.9 <= slow["p95_s"] <= 4 and slow["count"] >= 2, slow
    if verdict == "SATURATED":
        assert saturation["numbers"]["failed"] >= 3 and "no answer within 5 s" in found["reasons"][0]
        assert found["reasons"][0].endswith("every connection came back after the traffic: saturation, not a leak")
        # the pool's 6 most of the load; the holds still out when it ended are not counted (a floor, then)
        assert 3 <= slow["busy"] <= 6.5, slow
        assert (
            "GET /api/slow held its connection 3" in found["reasons"][0] and "the pools give 6" in found["reasons"][0]
        )
    else:
        assert saturation["numbers"]["failed"] == 0
        assert 1 <= slow["busy"] <= 2.2, slow  # 2 users, each holding one most of the time


def test_a_hang_up_that_cancels_the_statement_is_seen_in_the_servers_log(tmp_path: Path) -> None:
    # The demo's streaming endpoint: a hang-up cancels the handler, and asyncpg cancels its pg_sleep().
    code, output, run_dir = run(
        tmp_path,
        *("--variant", "fixed", "--mix", "steady=1,disconnect=2", *QUICK),
        env={"DRAINWATCH_DISCONNECT": "GET /work-stream?ms=2000"},
    )
    assert code == 0, output
    found = json.loads((run_dir / "summary.json").read_text())["hangups"]["disconnect GET /work-stream"]
    assert found["server_log"] and found["hangups"] >= 1
    # Each reached the server's work; one that lands between the first chunk and the statement's
    # start is cancelled in Python before PostgreSQL sees it (CI saw 125 of 126), so not all.
    assert found["cancelled"] >= 0.95 * found["hangups"], found


@pytest.mark.parametrize(("variant", "passed"), [("leaky", False), ("correct", True)])
def test_shutdown_check(tmp_path: Path, variant: str, passed: bool) -> None:
    body = '[[endpoints]]\npath = "/items"\n\n[chaos.error]\nrequest = "GET /take"\nexpect = [200]\n'
    folder = config(tmp_path, "stubborn", variant, body)
    proc = drainwatch("run", "--run-id", "r", "-q", cwd=folder, timeout=300)
    found = summary(folder, "r")
    shutdown = [c for c in found["checks"] if c["name"] == "shutdown"]
    assert [c["passed"] for c in shutdown] == [passed], proc.stdout
    if passed:
        assert proc.returncode == 0 and found["verdict"] == "PASS"
    else:
        assert proc.returncode == 1 and "shutdown" in found["evidence"]
        assert shutdown[0]["detail"].startswith("after SIGTERM the service did not exit within 10.0s and was killed")


def test_check_tries_everything_without_a_run(tmp_path: Path) -> None:
    proc = drainwatch("check", *AIOHTTP, "-e", "GET /api/items", cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "ok  steady     GET /api/items → 200" in lines
    assert any(line.startswith("ok  probe GET /api/items → 200, reached the database") for line in lines)
    assert lines[-1] == "ready: `drainwatch run` with the same options"
    bad = drainwatch("check", *AIOHTTP, "-e", "GET /api/nope", cwd=REPO, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: GET /api/nope (steady) answered 404 before any load")


def test_a_load_that_starts_failing_mid_run_for_another_reason_is_error(tmp_path: Path) -> None:
    # The session expires 8 s after the service starts: from the middle of the load on, 401.
    folder = config(tmp_path, "stubborn", "correct", '[[endpoints]]\npath = "/session-items"\n')
    proc = drainwatch("run", "--run-id", "r", "-q", "--mix", "steady=1", cwd=folder, timeout=240)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    found = summary(folder, "r")
    assert found["verdict"] == "ERROR" and found["evidence"] == ["load_invalid"]
    assert found["reasons"][0].startswith("the steady kind tested nothing: ")
    assert "were answered as not served" in found["reasons"][0] and "HTTP 401" in found["reasons"][0]


def test_rate_holds_the_load_to_the_rate_asked(tmp_path: Path) -> None:
    # 4 users as fast as they go send hundreds of requests in 6 s; at --rate 10, about 60.
    code, output, run_dir = run(
        tmp_path, "--variant", "fixed", "--mix", "steady=1", "--rate", "10", *QUICK[:-3], "--users", "4", "-q"
    )
    assert code == 0, output
    start, end = json.loads((run_dir / "run.json").read_text())["phases"]["load"]
    sent = 0
    for path in run_dir.glob("requests-locust-*.csv"):
        with open(path, newline="") as handle:
            sent += sum(start <= float(row["start"]) <= end for row in csv.DictReader(handle))
    assert 10 <= sent <= 10 * (end - start) * 1.3 + 4, sent  # paced: never far over the rate
