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

from tests.helpers import leftovers

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
