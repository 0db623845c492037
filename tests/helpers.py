"""Driving the CLI as a subprocess, and finding processes a run may have left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

# Short phases: the same run as the default, compressed for tests.
SHORT_PHASES = ["--warmup", "3s", "--baseline", "2s", "--duration", "10s", "--settle", "8s"]
FAST = [*SHORT_PHASES, "--users", "20", "-q"]


def drainwatch(*args: str, timeout: float = 180, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drainwatch", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip


def leftovers(run_dir: Path) -> dict[str, int]:
    """Children the run recorded in run.json that are still running."""
    started = json.loads((run_dir / "run.json").read_text())["processes"]
    alive = {}
    for name, pid in started.items():
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive[name] = pid
        except psutil.NoSuchProcess:
            pass
    return alive
