"""Faults during a run: PostgreSQL restarts, backends killed, the target paused, the collector killed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import FAST, drainwatch, leftovers, run_until

pytestmark = pytest.mark.slow


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_restart_and_pause_on_the_fixed_variant(tmp_path: Path) -> None:
    proc = drainwatch(
        "run",
        "--variant",
        "fixed",
        "--fault",
        "pg-restart@3s",
        "--fault",
        "pause-target@6s+2s",
        "--out",
        str(tmp_path),
        "--run-id",
        "f",
        *FAST,
    )
    summary = _summary(tmp_path / "f")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["verdict"] == "PASS"
    # requests failed by the restart and the pause are the faults', not the service saturating
    assert [c["passed"] for c in summary["checks"] if c["name"] == "saturation"] == [True]
    assert summary["gaps"]["count"] >= 1  # the collector saw PostgreSQL go, and reconnected
    assert any("could not be reached" in reason for reason in summary["reasons"])
    record = json.loads((tmp_path / "f" / "run.json").read_text())
    assert [(f["kind"], "error" in f) for f in record["faults"]] == [("pg-restart", False), ("pause-target", False)]
    assert [f["fault"] for f in summary["faults"]] == ["pg-restart@3s", "pause-target@6s+2s"]
    said = next(r for r in summary["reasons"] if r.startswith("faults drainwatch injected: "))
    assert "pg-restart@3s (" in said and "pause-target@6s+2s (target paused 2s)" in said
    samples = list(csv.DictReader((tmp_path / "f" / "samples.csv").open()))
    gap_at = next(i for i, s in enumerate(samples) if s["gap"] == "1")
    assert any(s["gap"] == "0" and int(s["total"]) > 0 for s in samples[gap_at:])  # readings resumed
    assert leftovers(tmp_path / "f") == {}  # the restarted PostgreSQL too


def test_terminated_backends_leave_the_leaky_pool_counting_ghosts(tmp_path: Path) -> None:
    """The server kills the held connections: PostgreSQL shows nothing, the pool still counts them."""
    proc = drainwatch(
        "run", "--variant", "leaky", "--fault", "terminate-backends@8s", "--out", str(tmp_path), "--run-id", "t", *FAST
    )
    summary = _summary(tmp_path / "t")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary["verdict"] == "LEAK" and "pool_view" in summary["evidence"]
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["faults"][0]["detail"].startswith("terminated ")


def test_collector_killed_is_an_error_with_what_it_wrote(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drainwatch",
            "run",
            "--variant",
            "fixed",
            "--out",
            str(tmp_path),
            "--run-id",
            "k",
            *FAST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_json = tmp_path / "k" / "run.json"
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and run.poll() is None
        record = json.loads(run_json.read_text()) if run_json.exists() else {}
        if record.get("current_phase") == "load":
            break
        time.sleep(0.1)
    time.sleep(2)
    os.kill(record["processes"]["collector"], signal.SIGKILL)
    output, _ = run.communicate(timeout=120)
    summary = _summary(tmp_path / "k")
    assert run.returncode == 2, output
    assert summary["verdict"] == "ERROR" and summary["evidence"] == ["collector_lost"]
    rows = list(csv.DictReader((tmp_path / "k" / "samples.csv").open()))
    assert len(rows) > 20 and all(row["t"] and row["gap"] in ("0", "1") for row in rows)  # parseable to the last line
    assert (tmp_path / "k" / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "meteor@3s"], "error: --fault 'meteor@3s' is not a fault — hint: write KIND@TIME"),
        (["--fault", "pg-restart@90s"], "error: --fault pg-restart@90s comes after the load ends (30s)"),
        (
            [
                "--fault",
                "pause-target@3s",
                "--target-url",
                "http://127.0.0.1:9",
                "--dsn",
                "postgresql://x@127.0.0.1:9/x",
                "-e",
                "GET /x",
            ],
            "error: --fault pause-target needs the demo service drainwatch starts or --docker-target CONTAINER — "
            "hint: leave out --target-url, or name the target's container",
        ),
    ],
)
def test_bad_faults(args: list[str], message: str, tmp_path: Path) -> None:
    proc = drainwatch("run", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(message), proc.stderr


def test_docker_faults_without_an_engine_fail_before_the_run(tmp_path: Path) -> None:
    """The Docker SDK path, as far as a machine without an engine allows: a clear refusal."""
    proc = drainwatch(
        "run",
        "--fault",
        "pg-restart@3s",
        "--docker-postgres",
        "compose-postgres-1",
        "--out",
        str(tmp_path / "r"),
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error: cannot reach the Docker engine (") and "Traceback" not in proc.stderr
    assert line.endswith("hint: start Docker, or leave out --docker-postgres/--docker-target")
    assert not (tmp_path / "r").exists()


def test_docker_faults_reach_the_containers() -> None:
    """The fault dispatch against a stand-in client at the DockerControl seam (no engine here)."""
    import asyncio

    from drainwatch.plan import Fault, Match
    from drainwatch.run.faults import DockerControl, inject

    calls: list[str] = []

    class Container:
        def __init__(self, name: str) -> None:
            self.name = name

        def restart(self, timeout: int) -> None:
            calls.append(f"restart {self.name} {timeout}")

        def pause(self) -> None:
            calls.append(f"pause {self.name}")

        def unpause(self) -> None:
            calls.append(f"unpause {self.name}")

    class Containers:
        def get(self, name: str) -> Container:
            return Container(name)

    class Client:
        containers = Containers()

    events: list[dict] = []
    control = DockerControl(Client(), postgres="pg", target="demo")
    faults = (Fault("pg-restart", 0.0), Fault("pause-target", 0.05, 0.1))
    asyncio.run(
        inject(
            faults, load_start=time.time(), db=None, target=None, match=Match(), on_event=events.append, docker=control
        )
    )
    assert calls == ["restart pg 10", "pause demo", "unpause demo"]
    assert [e["detail"] for e in events] == ["container pg restarted", "container demo paused 0.1s"]


def test_report_is_checkpointed_during_a_long_load(tmp_path: Path) -> None:
    """A soak killed mid-load still has a report: it is rendered now and then while the load runs."""
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drainwatch",
            "run",
            "--variant",
            "fixed",
            "--out",
            str(tmp_path),
            "--run-id",
            "c",
            "--warmup",
            "2s",
            "--baseline",
            "2s",
            "--duration",
            "12s",
            "--settle",
            "3s",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DRAINWATCH_CHECKPOINT_EVERY": "3"},
    )
    run_json, report = tmp_path / "c" / "run.json", tmp_path / "c" / "report.html"
    seen_during_load = False
    deadline = time.monotonic() + 90
    while run.poll() is None and time.monotonic() < deadline:
        phase = json.loads(run_json.read_text()).get("current_phase") if run_json.exists() else None
        if phase == "load" and report.exists():
            seen_during_load = True
            break
        time.sleep(0.2)
    run.wait(120)
    assert seen_during_load


@pytest.mark.parametrize(
    ("name", "said"), [("postgres", "PostgreSQL"), ("target", "the service")]
)  # fmt: skip
def test_a_process_killed_mid_load_is_said_not_diagnosed(tmp_path: Path, name: str, said: str) -> None:
    run, record = run_until("load", tmp_path, "d", "--variant", "fixed", *FAST)
    time.sleep(2)
    pid = record["processes"][name]
    os.kill(pid, signal.SIGKILL)
    output, _ = run.communicate(timeout=180)
    summary = _summary(tmp_path / "d")
    assert run.returncode == 2, output
    assert summary["verdict"] == "ERROR" and summary["evidence"] == ["process_died"], summary["reasons"]
    log = "postgres.log" if name == "postgres" else "target.log"
    assert summary["reasons"][0].startswith(
        f"{said} (pid {pid}) died during the run, killed by SIGKILL; the last lines of logs/{log}: "
    ), summary["reasons"]
    assert summary["diagnosis"] == []  # nothing to say of the service's code
    assert leftovers(tmp_path / "d") == {}
