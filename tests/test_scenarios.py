"""The chaos scenarios, driven by real Locust against a real (database-free) Starlette target.

Each test runs ``locust -f scenarios/<file>.py`` headless for a few seconds with the kinds
pointed at ``tests/targets/plain_starlette.py``, then reads Locust's CSVs, drainwatch's
request log (``DRAINWATCH_REQUESTS_CSV``) and the target's own counters (did it see the
client go?). Nothing is mocked.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from drainwatch.provision.processes import free_port
from tests.helpers import serving, stop

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "src" / "drainwatch" / "scenarios"
RUN_SECONDS = 3
USERS = 5
LOG_FIELDS = ["start", "end", "scenario", "method", "name", "status", "outcome", "request_id", "detail"]
AUTH = {"Authorization": "Bearer t"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("target") / "target.log"
    with serving(
        [sys.executable, "-m", "tests.targets.plain_starlette", "--port", "{port}"], log_path, ready="/stats"
    ) as served:
        yield served.url


def counters(url: str) -> Counter[str]:
    return Counter(httpx.get(url + "/stats", timeout=5).json())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Run:
    stats: dict[str, dict[str, str]]  # Locust's stats rows by name
    failures: list[dict[str, str]]
    exceptions: list[dict[str, str]]
    rows: list[dict[str, str]]  # drainwatch's request log, every process's file
    seen: Counter[str] = field(default_factory=Counter)  # what the target counted during the run
    log: str = ""

    def requests(self, name: str) -> int:
        return int(self.stats[name]["Request Count"]) if name in self.stats else 0

    def errors(self, name: str) -> list[str]:
        return [f["Error"] for f in self.failures if f["Name"] == name]

    def of(self, scenario: str) -> list[dict[str, str]]:
        """The request log's rows of one kind, without those Locust cut short when it stopped."""
        return [r for r in self.rows if r["scenario"] == scenario and not r["detail"].startswith("cut:")]


def locust(tmp_path: Path, host: str, locustfile: str, env: dict[str, str], target: str | None = None) -> Run:
    """Run ``scenarios/<locustfile>.py`` for RUN_SECONDS against ``host`` with ``env``."""
    prefix = tmp_path / "locust"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("DRAINWATCH_")}
    run_env |= {"PYTHONUNBUFFERED": "1", "DRAINWATCH_REQUESTS_CSV": str(tmp_path / "requests"), **env}
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(SCENARIOS / f"{locustfile}.py"),
        "--headless",
        "-u",
        str(USERS),
        "-r",
        str(USERS),
        "-t",
        f"{RUN_SECONDS}s",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "2",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    before = counters(target) if target else Counter()
    log_path = tmp_path / "locust.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=run_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        proc.wait(RUN_SECONDS + 30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"locust still running after {RUN_SECONDS + 30} s:\n{log_path.read_text()[-3000:]}")
    finally:
        stop(proc)
    output = log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    seen = Counter()
    if target:
        time.sleep(0.7)  # abandoned /slow handlers (500 ms) finish and count what they saw
        seen = counters(target)
        seen.subtract(before)
    rows = []
    for path in sorted(tmp_path.glob("requests-*.csv")):
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == LOG_FIELDS, path
            rows += list(reader)
    return Run(
        stats={r["Name"]: r for r in read_csv(Path(f"{prefix}_stats.csv"))},
        failures=read_csv(Path(f"{prefix}_failures.csv")),
        exceptions=read_csv(Path(f"{prefix}_exceptions.csv")),
        rows=rows,
        seen=+seen,
        log=output,
    )


def well_formed(run: Run) -> None:
    """Every run: no exception in Locust's users, and a request log that is complete and sane."""
    assert run.exceptions == [], run.exceptions
    assert run.rows, run.log[-2000:]
    for row in run.rows:
        assert re.fullmatch(r"\d+\.\d{3}", row["start"]) and float(row["start"]) <= float(row["end"]), row
        assert row["outcome"] in ("ok", "chaos", "no_chaos", "failed"), row
        assert re.fullmatch(r"[0-9a-f]{16}", row["request_id"]), row
        assert row["status"] == "" or row["status"].isdigit(), row
        assert "?" not in row["name"] and "\n" not in row["detail"], row
    assert len({r["request_id"] for r in run.rows}) == len(run.rows)
    # Locust's stats CSV is rewritten once a second, not at exit: it may miss the last second,
    # the request log may not (it is flushed at test_stop/quitting).
    for name, entry in run.stats.items():
        if name != "Aggregated":
            scenario, method, path = name.split(" ", 2)
            logged = [r for r in run.rows if (r["scenario"], r["method"], r["name"]) == (scenario, method, path)]
            assert len(logged) >= int(entry["Request Count"]), (name, len(logged), entry["Request Count"])


def all_outcome(rows: list[dict[str, str]], outcome: str) -> None:
    assert rows and {r["outcome"] for r in rows} == {outcome}, Counter((r["outcome"], r["detail"][:60]) for r in rows)


@pytest.mark.parametrize("after_ms", [0, 150])
def test_disconnect_on_a_plain_slow_endpoint(tmp_path: Path, target: str, after_ms: int) -> None:
    """The hang-up before the first byte: delivered, a Locust success, and seen by the target."""
    run = locust(
        tmp_path,
        target,
        "disconnect",
        {"DRAINWATCH_DISCONNECT": "GET /slow?ms=500", "DRAINWATCH_DISCONNECT_AFTER_MS": str(after_ms)},
        target,
    )
    well_formed(run)
    assert run.requests("disconnect GET /slow") > 0 and run.failures == []
    rows = run.of("disconnect")
    all_outcome(rows, "chaos")
    assert all(r["detail"].startswith("hung up before the first byte") and r["status"] == "" for r in rows)
    assert all(float(r["end"]) - float(r["start"]) < 0.45 for r in rows)  # long before the 500 ms answer
    assert run.seen["slow:disconnected"] > 0, run.seen
    assert run.seen["scenario:disconnect"] >= len(rows) * 0.9  # the X-Drainwatch-* headers went out on the socket


def test_disconnect_mid_stream(tmp_path: Path, target: str) -> None:
    run = locust(
        tmp_path,
        target,
        "disconnect",
        {"DRAINWATCH_DISCONNECT": "GET /stream", "DRAINWATCH_DISCONNECT_AFTER_CHUNKS": "3"},
        target,
    )
    well_formed(run)
    assert run.requests("disconnect GET /stream") > 0 and run.failures == []
    rows = run.of("disconnect")
    all_outcome(rows, "chaos")
    # at least 3: on a busy machine two chunks 50 ms apart can arrive in one read
    seen = [re.match(r"hung up mid-stream after (\d+) chunk\(s\)", r["detail"]) for r in rows]
    assert all(m and int(m.group(1)) >= 3 and r["status"] == "200" for m, r in zip(seen, rows, strict=True)), [
        r["detail"] for r in rows
    ]
    assert run.seen["stream:cut"] > 0 and run.seen["stream:completed"] == 0, run.seen


def test_no_chaos_on_a_fast_endpoint(tmp_path: Path, target: str) -> None:
    """The response ends before the hang-up, the answer before the client deadline, a 200 where
    an error was asked for: each a failure saying the chaos did not happen, never an exception."""
    run = locust(
        tmp_path,
        target,
        "mixed",
        {
            "DRAINWATCH_MIX": "disconnect=1,timeout=1,error=1",
            "DRAINWATCH_DISCONNECT": "GET /fast",
            "DRAINWATCH_DISCONNECT_AFTER_MS": "150",
            "DRAINWATCH_TIMEOUT": "GET /fast",
            "DRAINWATCH_TIMEOUT_CLIENT_MS": "100",
            "DRAINWATCH_ERROR": "GET /fast",
            "DRAINWATCH_ERROR_EXPECT": "500,502",
        },
    )
    well_formed(run)
    for kind in ("disconnect", "timeout", "error"):
        name = f"{kind} GET /fast"
        assert run.requests(name) > 0 and int(run.stats[name]["Failure Count"]) == run.requests(name)
        all_outcome(run.of(kind), "no_chaos")
    assert all(
        re.fullmatch(
            r"CatchResponseError\('no chaos: the response ended after \d+ ms, before the hang-up at 150 ms'\)", e
        )
        for e in run.errors("disconnect GET /fast")
    )
    assert all(
        re.fullmatch(r"CatchResponseError\('no chaos: answered in \d+ ms, before the client deadline of 100 ms'\)", e)
        for e in run.errors("timeout GET /fast")
    )
    assert run.errors("error GET /fast") == ["CatchResponseError('no chaos: HTTP 200, expected one of [500, 502]')"]


def test_statuses_before_the_chaos(tmp_path: Path, target: str) -> None:
    """A 404 is the service's answer, not chaos; a 200 from a server-side deadline is no chaos."""
    run = locust(
        tmp_path,
        target,
        "mixed",
        {
            "DRAINWATCH_MIX": "disconnect=1,steady=1,timeout=1,error=1",
            "DRAINWATCH_DISCONNECT": "GET /missing",
            "DRAINWATCH_STEADY": "GET /missing",
            "DRAINWATCH_TIMEOUT": "GET /fast",
            "DRAINWATCH_TIMEOUT_EXPECT": "504",
            "DRAINWATCH_ERROR": "GET /missing",
            "DRAINWATCH_ERROR_EXPECT": "500",
        },
    )
    well_formed(run)
    assert run.errors("disconnect GET /missing") == ["CatchResponseError('HTTP 404 before the hang-up')"]
    assert run.errors("steady GET /missing") == ["""CatchResponseError('HTTP 404: {"detail":"no such thing"}')"""]
    assert run.errors("timeout GET /fast") == ["CatchResponseError('no chaos: HTTP 200, expected one of [504]')"]
    assert run.errors("error GET /missing") == ["CatchResponseError('HTTP 404, expected one of [500]')"]
    for kind, outcome in (("disconnect", "failed"), ("steady", "failed"), ("timeout", "no_chaos"), ("error", "failed")):
        all_outcome(run.of(kind), outcome)
    assert {r["status"] for r in run.of("disconnect")} == {"404"}


def test_delivered_chaos_and_headers_of_the_endpoint(tmp_path: Path, target: str) -> None:
    """A client deadline that fires, an expected handler error, and an Authorization header that
    reaches the server for steady and disconnect alike: all Locust successes."""
    run = locust(
        tmp_path,
        target,
        "mixed",
        {
            "DRAINWATCH_MIX": "steady=1,disconnect=1,timeout=1,error=1",
            "DRAINWATCH_STEADY": json.dumps({"method": "GET", "path": "/auth", "headers": AUTH}),
            "DRAINWATCH_DISCONNECT": json.dumps({"method": "GET", "path": "/auth?ms=500", "headers": AUTH}),
            "DRAINWATCH_DISCONNECT_AFTER_MS": "150",
            "DRAINWATCH_TIMEOUT": "GET /slow?ms=500",
            "DRAINWATCH_TIMEOUT_CLIENT_MS": "100",
            "DRAINWATCH_ERROR": "GET /boom",
            "DRAINWATCH_ERROR_EXPECT": "500,502",
        },
        target,
    )
    well_formed(run)
    assert run.failures == [], run.failures
    for name in ("steady GET /auth", "disconnect GET /auth", "timeout GET /slow", "error GET /boom"):
        assert run.requests(name) > 0, name
    all_outcome(run.of("steady"), "ok")
    all_outcome(run.of("disconnect"), "chaos")
    all_outcome(run.of("timeout"), "chaos")
    all_outcome(run.of("error"), "chaos")
    assert all(r["detail"].startswith("the deadline fired after") for r in run.of("timeout"))
    assert run.seen["auth:denied"] == 0 and run.seen["auth:authorized"] >= len(run.of("steady")), run.seen
    assert run.seen["auth:disconnected"] > 0 and run.seen["slow:disconnected"] > 0, run.seen
    assert run.seen["boom:raised"] >= len(run.of("error"))


def test_nobody_listening(tmp_path: Path) -> None:
    """Connection refused: a failure that names it, for every kind, and still no exception."""
    host = f"http://127.0.0.1:{free_port()}"
    run = locust(
        tmp_path,
        host,
        "mixed",
        {
            "DRAINWATCH_MIX": "steady=1,disconnect=1,timeout=1,error=1",
            "DRAINWATCH_STEADY": "GET /fast",
            "DRAINWATCH_DISCONNECT": "GET /slow",
            "DRAINWATCH_TIMEOUT": "GET /slow",
            "DRAINWATCH_TIMEOUT_CLIENT_MS": "100",
            "DRAINWATCH_ERROR": "GET /boom",
        },
    )
    well_formed(run)
    assert {f["Error"] for f in run.failures} == {"CatchResponseError('connection refused')"}, run.failures
    for kind in ("steady", "disconnect", "timeout", "error"):
        rows = run.of(kind)
        all_outcome(rows, "failed")
        assert {(r["status"], r["detail"]) for r in rows} == {("", "connection refused")}
