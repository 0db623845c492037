"""Ctrl-C or SIGTERM at any phase: exit 130/143, status interrupted, a report, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import leftovers, run_until

pytestmark = pytest.mark.slow

PHASES = ["provision", "warmup", "baseline", "load", "settle", "probe"]


def _current_phase(run_json: Path) -> str | None:
    try:
        return json.loads(run_json.read_text()).get("current_phase")
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(
    ("phase", "signum"),
    [(phase, signal.SIGINT) for phase in PHASES] + [("load", signal.SIGTERM)],
)
def test_interrupt_at_each_phase(phase: str, signum: int, tmp_path: Path) -> None:
    # The probe only lasts long when the pool is exhausted: use the leaky variant there.
    variant = "leaky" if phase == "probe" else "fixed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drainwatch",
            "run",
            "--variant",
            variant,
            "--out",
            str(tmp_path),
            "--run-id",
            "r",
            "-q",
            "--warmup",
            "4s",
            "--baseline",
            "3s",
            "--duration",
            "8s",
            "--settle",
            "6s",
            "--probe-timeout",
            "10s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ,
    )
    run_json = tmp_path / "r" / "run.json"
    deadline = time.monotonic() + 90
    while _current_phase(run_json) != phase:
        assert proc.poll() is None, f"run ended before {phase}: {proc.stdout.read() if proc.stdout else ''}"
        assert time.monotonic() < deadline, f"never reached {phase}"
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the phase
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signum, output
    assert "Traceback" not in output
    record = json.loads(run_json.read_text())
    assert record["status"] == "interrupted"
    assert record["phases"][phase][1] is not None  # the phase was closed, with its end time
    assert (tmp_path / "r" / "report.html").is_file()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["verdict"] is None
    time.sleep(0.5)
    assert leftovers(tmp_path / "r") == {}


def test_second_interrupt_kills_everything_and_still_reports(tmp_path: Path) -> None:
    """Ctrl-C twice while unwinding a leaky run (its target ignores the polite stop): every
    child is killed at once, nothing is left behind, and the partial report is written."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drainwatch",
            "run",
            "--variant",
            "leaky",
            "--out",
            str(tmp_path),
            "--run-id",
            "r",
            "-q",
            "--warmup",
            "3s",
            "--baseline",
            "2s",
            "--duration",
            "10s",
            "--settle",
            "10s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ,
    )
    run_json = tmp_path / "r" / "run.json"
    deadline = time.monotonic() + 90
    while _current_phase(run_json) != "settle":
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "SIGINT again: killing every process now" in output and "Traceback" not in output
    assert json.loads(run_json.read_text())["status"] == "interrupted"
    assert (tmp_path / "r" / "report.html").is_file()
    time.sleep(0.5)
    assert leftovers(tmp_path / "r") == {}


def test_kill_9_during_the_load_leaves_nothing_running_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    # No finally runs: the kernel ends drainwatch's children (their parent-death signal), and the
    # next run into the same folder ends what is left, removes the embedded server's data, marks it killed.
    argv = [sys.executable, "-m", "drainwatch", "run", "--out", str(tmp_path), "--run-id", "k", "-q"]
    proc, _ = run_until("load", tmp_path, "k", "-q")
    run_json = tmp_path / "k" / "run.json"
    time.sleep(2)
    record = json.loads(run_json.read_text())
    assert {"postgres", "target", "collector", "locust"} <= set(record["processes"])
    proc.kill()
    proc.wait(10)
    time.sleep(5)
    assert leftovers(tmp_path / "k") == {}  # every process the run started is gone
    data = Path(record["database"]["data_dir"])
    assert data.parent.is_dir()  # ...but its data folder is still there, and run.json says running
    assert json.loads(run_json.read_text())["status"] == "running"

    # The next run into the same folder: the sweep comes before anything starts (this one then fails fast).
    nxt = subprocess.run(
        [*argv[:-3], "--run-id", "next", "--dsn", "postgresql://nobody@127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nxt.returncode == 2, nxt.stdout + nxt.stderr
    assert "run 'k' was killed during load: " in nxt.stdout + nxt.stderr
    assert "removed its PostgreSQL data (" in nxt.stdout + nxt.stderr
    assert not data.parent.exists()
    killed = json.loads(run_json.read_text())
    assert killed["status"] == "killed" and killed["error"].endswith("was killed during load")
    report = subprocess.run(
        [sys.executable, "-m", "drainwatch", "report", str(tmp_path / "k")], capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 0, report.stderr
    assert "killed" in (tmp_path / "k" / "report.html").read_text()


def test_report_on_a_run_whose_drainwatch_was_killed_says_so(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    record = {"run_id": "r", "status": "running", "started": time.time() - 5, "current_phase": "settle"}
    record |= {"phases": {}, "processes": {"target": gone.pid}, "owner": {"pid": gone.pid, "started": time.time() - 5}}
    (run_dir / "run.json").write_text(json.dumps(record))
    proc = subprocess.run(
        [sys.executable, "-m", "drainwatch", "report", str(run_dir)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("run 'r' was killed during settle: no process of it was left running"), proc.stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "killed"
