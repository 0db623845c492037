"""The traps of FINDINGS.md, each run for real: the verdict is right and names its evidence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drainwatch.instrument import POOL_VIEW_PATH
from drainwatch.provision.postgres import Database
from tests.conftest import demo_service, fresh_database
from tests.helpers import FAST, SHORT_PHASES, drainwatch, serving

pytestmark = pytest.mark.slow


@contextmanager
def psycopg_target(dsn: str, log: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "tests.targets.psycopg_app", "{port}"]
    with serving(argv, log, env={"DRAINWATCH_DEMO_DSN": dsn}) as served:
        yield served.url


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_connections_closed_by_the_garbage_collector(pg: Database, tmp_path: Path) -> None:
    """The pool is exhausted with zero extra connections visible: LEAK, by the pool view and the probe."""
    dsn = fresh_database(pg, "trap_gc")
    with psycopg_target(dsn, tmp_path / "target.log") as url:
        env = {"DRAINWATCH_STEADY": "GET /work", "DRAINWATCH_ERROR": "GET /leak-gc", "DRAINWATCH_ERROR_EXPECT": "200"}
        proc = drainwatch(
            "run",
            "--target-url",
            url,
            "--dsn",
            dsn,
            "--app-name",
            "dw-test-psycopg%",
            "--pool-view",
            POOL_VIEW_PATH,
            "--mix",
            "steady=6,error=1",
            "--users",
            "4",
            "--probe-timeout",
            "4s",
            "--out",
            str(tmp_path),
            "--run-id",
            "gc",
            *SHORT_PHASES,
            "-q",
            env=env,
        )
    summary = _summary(tmp_path / "gc")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary["verdict"] == "LEAK"
    assert "pool_view" in summary["evidence"] and "probe" in summary["evidence"]
    assert summary["final"]["total"] <= summary["baseline"]["total"]  # nothing extra to see in PostgreSQL
    assert summary["leaked_by_kind"]["invisible"] >= 1
    assert any("closed behind the pool's back" in reason for reason in summary["reasons"])


def test_healthy_pool_with_min_size_and_idle_lifetime_passes(pg: Database, tmp_path: Path) -> None:
    """Load grows the pool past its warm-up size; its idle connections show app SQL (no reset)."""
    dsn = fresh_database(pg, "trap_idle")
    with psycopg_target(dsn, tmp_path / "target.log") as url:
        env = {
            "DRAINWATCH_STEADY": "GET /work",
            "DRAINWATCH_TIMEOUT": "GET /work?ms=400",
            "DRAINWATCH_TIMEOUT_EXPECT": "200",
        }
        proc = drainwatch(
            "run",
            "--target-url",
            url,
            "--dsn",
            dsn,
            "--app-name",
            "dw-test-psycopg%",
            "--pool-view",
            POOL_VIEW_PATH,
            "--mix",
            "steady=1,timeout=3",
            "--users",
            "6",
            "--out",
            str(tmp_path),
            "--run-id",
            "idle",
            *SHORT_PHASES,
            "-q",
            env=env,
        )
    summary = _summary(tmp_path / "idle")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["verdict"] == "PASS", summary["reasons"]
    assert summary["pool_view"]["checked_out"] == 0


def test_dead_target_is_error_not_leak(pg: Database, tmp_path: Path) -> None:
    """The target dies during the load: ERROR ("target down"), a report, exit code 2."""
    dsn = fresh_database(pg, "trap_dead")
    with demo_service(dsn, "fixed", tmp_path / "target.log") as url:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drainwatch",
                "run",
                "--target-url",
                url,
                "--dsn",
                dsn,
                "--app-name",
                "drainwatch-demo-fixed:%",
                "-e",
                "GET /items",
                "--probe-path",
                "/health/db",
                "--out",
                str(tmp_path),
                "--run-id",
                "dead",
                *FAST,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        run_json = tmp_path / "dead" / "run.json"
        deadline = time.monotonic() + 60
        while not (run_json.exists() and json.loads(run_json.read_text()).get("current_phase") == "load"):
            assert time.monotonic() < deadline and run.poll() is None, (
                run.stdout.read() if run.poll() is not None else "no load in 60 s"
            )
            time.sleep(0.1)
        time.sleep(2)
        _kill_listener(url)
        output, _ = run.communicate(timeout=120)
    summary = _summary(tmp_path / "dead")
    assert run.returncode == 2, output
    assert summary["verdict"] == "ERROR" and summary["evidence"] == ["target_down"]
    assert "the target is down" in summary["reasons"][0]
    assert (tmp_path / "dead" / "report.html").is_file()


def _kill_listener(url: str) -> None:
    import psutil

    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            os.kill(conn.pid, signal.SIGKILL)
            return
    raise AssertionError(f"nothing listens on {port}")
