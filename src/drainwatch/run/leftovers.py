"""What a killed run left behind, found and ended by the next one.

A ``kill -9`` of drainwatch runs no ``finally``: on Linux the kernel still ends its children
(the parent-death signal, see ``drainwatch.provision.processes``), but the embedded server's
data folder stays in the temporary folder and ``run.json`` still says ``running``. The next
``drainwatch run`` into the same output folder looks at each run there that says ``running``
and whose drainwatch is gone: it ends the processes that run recorded (those still alive and
started after it, so a reused pid is never touched), removes its data folder, and marks it
``killed``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from drainwatch.rundir import RUN_JSON, write_json

KILLED = "killed"
_SIGNALS = {"postgres": signal.SIGQUIT}  # immediate shutdown: its backends end with it


def owner_alive(record: Mapping[str, Any]) -> bool:
    """True when the drainwatch that wrote ``record`` still runs (or the record does not say who it was)."""
    owner = record.get("owner")
    if not isinstance(owner, Mapping) or not isinstance(owner.get("pid"), int):
        return True
    try:
        return bool(abs(psutil.Process(owner["pid"]).create_time() - float(owner.get("started") or 0)) < 1.0)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, TypeError):
        return False


def killed_runs(out_dir: Path) -> list[Path]:
    """The run folders in ``out_dir`` whose run.json says running while their drainwatch is gone."""
    found = []
    for path in sorted(out_dir.glob(f"*/{RUN_JSON}")) if out_dir.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("status") == "running" and not owner_alive(record):
            found.append(path.parent)
    return found


def clean_up(run_dir: Path) -> str:
    """End what the killed run in ``run_dir`` left running, remove its data folder, mark it killed.
    Returns the line that says what was done."""
    record = json.loads((run_dir / RUN_JSON).read_text())
    stopped = [name for name, pid in (record.get("processes") or {}).items() if _end(name, pid, record)]
    removed = _remove_data_dir((record.get("database") or {}).get("data_dir"))
    phase = record.get("current_phase")
    record.update(
        status=KILLED,
        error=f"drainwatch (pid {record['owner']['pid']}) was killed{f' during {phase}' if phase else ''}",
        finished=record.get("finished") or time.time(),
    )
    write_json(run_dir / RUN_JSON, record)
    done = [f"stopped its {', '.join(stopped)}" if stopped else "no process of it was left running"]
    if removed:
        done.append(f"removed its PostgreSQL data ({removed / 1e6:.0f} MB)")
    return f"run {run_dir.name!r} was killed{f' during {phase}' if phase else ''}: {'; '.join(done)}"


def _end(name: str, pid: Any, record: Mapping[str, Any]) -> bool:
    """SIGKILL (PostgreSQL: SIGQUIT first) a process the run started, if it is still the same one."""
    try:
        proc = psutil.Process(int(pid))
        if proc.create_time() < float(record.get("started") or 0) - 1 or proc.status() == psutil.STATUS_ZOMBIE:
            return False  # not the one the run started: its pid was reused
        proc.send_signal(_SIGNALS.get(name, signal.SIGKILL))
        try:
            proc.wait(5)
        except psutil.TimeoutExpired:
            proc.kill()
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, TypeError):
        return False


def _remove_data_dir(data_dir: Any) -> int:
    """Remove the embedded server's temporary folder (the parent of its data directory); its size."""
    if not isinstance(data_dir, str) or not data_dir:
        return 0
    workdir = Path(data_dir).parent
    if workdir.parent != Path(tempfile.gettempdir()) or not workdir.name.startswith("drainwatch-pg-"):
        return 0  # only ever a folder drainwatch made
    size = sum(f.stat().st_size for f in workdir.rglob("*") if f.is_file() and not f.is_symlink())
    shutil.rmtree(workdir, ignore_errors=True)
    return size if not workdir.exists() else 0


def if_killed(run_dir: Path) -> str | None:
    """Clean up after the run in ``run_dir`` if it was killed; the line that says so, else None."""
    try:
        record = json.loads((run_dir / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") != "running" or owner_alive(record):
        return None
    return clean_up(run_dir)


def sweep(out_dir: Path) -> list[str]:
    """Clean up after every killed run in ``out_dir``; a line for each."""
    return [clean_up(run_dir) for run_dir in killed_runs(out_dir) if run_dir.is_dir() and os.access(run_dir, os.W_OK)]
