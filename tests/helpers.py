"""Driving the CLI as a subprocess, and finding processes a run may have left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent

# Short phases: the same run as the default, compressed for tests.
SHORT_PHASES = ["--warmup", "3s", "--baseline", "2s", "--duration", "10s", "--settle", "8s"]
FAST = [*SHORT_PHASES, "--users", "20", "-q"]


def drainwatch(
    *args: str, timeout: float = 180, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drainwatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def run_until(
    phase: str, out: Path, run_id: str, *args: str, timeout: float = 90
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start ``drainwatch run`` into ``out/run_id`` in the background and return once run.json says
    ``phase`` has begun: the process and the run.json of that moment (it fails the test otherwise)."""
    argv = [sys.executable, "-m", "drainwatch", "run", "--out", str(out), "--run-id", run_id, *args]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_json = out / run_id / "run.json"
    deadline = time.monotonic() + timeout
    while True:
        assert run.poll() is None, f"the run ended before {phase}: {run.stdout.read() if run.stdout else ''}"
        assert time.monotonic() < deadline, f"the run never reached {phase}"
        try:
            record = json.loads(run_json.read_text())
        except (OSError, ValueError):  # not written yet, or being rewritten
            record = {}
        if record.get("current_phase") == phase:
            return run, record
        time.sleep(0.05)


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


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections at ``host:port`` (the system PostgreSQL, say)."""
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


SYSTEM_DSN = "postgresql://postgres@127.0.0.1:5432/test"  # the machine's own PostgreSQL, when it has one

needs_system_pg = pytest.mark.skipif(not listening(5432), reason="no PostgreSQL listening on 127.0.0.1:5432")


@dataclass
class Served:
    """A server a test started: its URL, its process and its log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> tuple[int, float]:
    """End one process a test started, by its PID: SIGTERM, then SIGKILL after ``grace``.
    Returns (exit code, seconds it took)."""
    started = time.monotonic()
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode, time.monotonic() - started


@contextmanager
def serving(
    argv: list[str],
    log: Path,
    *,
    ready: str = "/",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path = REPO,
) -> Iterator[Served]:
    """Start a server (``{port}`` in ``argv`` becomes a free loopback port), wait until ``ready``
    answers 200, stop it at the end. Fails the test, with the server's log, if it never answers."""
    from drainwatch.provision.processes import free_port

    port = free_port()
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            [arg.replace("{port}", str(port)) for arg in argv],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{argv[2:4]} exited with {proc.returncode} before answering:\n{served.log_text()}")
            try:
                if httpx.get(served.url + ready, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{argv[2:4]} did not answer {ready} within {timeout:.0f} s:\n{served.log_text()}")
            time.sleep(0.1)
        yield served
    finally:
        stop(proc)


# A served target from tests/targets, driven through a drainwatch.toml (test_served*, the own-service path).
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
