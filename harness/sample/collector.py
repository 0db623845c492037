"""The sidecar collector: samples the target's backends in ``pg_stat_activity`` on a schedule.

It runs as its own process (``drainwatch collect``) with one connection of its own, in
autocommit: inside a transaction ``pg_stat_activity`` is a snapshot frozen for the
transaction's length. Each sample is appended to ``samples.csv`` and flushed as it is
taken, so a killed collector loses at most one interval, and nothing grows in memory.
When PostgreSQL goes away it writes a gap row and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from drainwatch.plan import Match
from drainwatch.provision.processes import managed_process
from drainwatch.sample.selector import COLLECTOR_APP_NAME, match_clause

log = logging.getLogger(__name__)

STATES = {
    "active": "active",
    "idle": "idle",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
}


@dataclass
class Sample:
    """One reading of the target's client backends."""

    t: float  # unix time of the reading
    total: int = 0
    active: int = 0
    idle: int = 0
    idle_in_transaction: int = 0
    idle_in_transaction_aborted: int = 0
    other: int = 0
    oldest_iit_s: float = 0.0  # age of the oldest "idle in transaction" state
    oldest_idle_s: float = 0.0
    oldest_active_s: float = 0.0
    all_client_backends: int = 0  # everyone's, the target's included
    max_connections: int = 0
    late_ms: float = 0.0  # how far the reading fell behind its slot in the schedule
    gap: int = 0  # 1: no reading, the database could not be reached

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]




def sample_sql(match: Match) -> tuple[str, dict[str, Any]]:
    where, params = match_clause(match)
    sql = f"""
        SELECT ({where}) AS mine, coalesce(state, '') AS state, count(*) AS n,
               coalesce(extract(epoch FROM max(now() - state_change)), 0)::float8 AS oldest
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
        GROUP BY 1, 2
    """
    return sql, params


def to_sample(t: float, rows: Iterable[Sequence[Any]], max_connections: int, late_ms: float = 0.0) -> Sample:
    """Fold ``(mine, state, count, oldest_age_s)`` rows into one Sample (pure: no database)."""
    sample = Sample(t=t, max_connections=max_connections, late_ms=round(late_ms, 2))
    for mine, state, n, oldest in rows:
        n = int(n)
        sample.all_client_backends += n
        if not mine:
            continue
        sample.total += n
        column = STATES.get(state, "other")
        setattr(sample, column, getattr(sample, column) + n)
        age = round(float(oldest or 0.0), 3)
        if column.startswith("idle_in_transaction"):
            sample.oldest_iit_s = max(sample.oldest_iit_s, age)
        elif column == "idle":
            sample.oldest_idle_s = max(sample.oldest_idle_s, age)
        elif column == "active":
            sample.oldest_active_s = max(sample.oldest_active_s, age)
    return sample


class SampleWriter:
    """Appends samples to a CSV file, one flushed line each."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self._file = open(path, "a", newline="", buffering=1)
        self._writer = csv.DictWriter(self._file, fieldnames=Sample.columns())
        if fresh:
            self._writer.writeheader()

    def write(self, sample: Sample) -> None:
        self._writer.writerow(asdict(sample))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_collector(
    dsn: str,
    match: Match,
    out: Path,
    *,
    interval: float = 0.25,
    duration: float | None = None,
    stop: threading.Event | None = None,
    on_sample: Callable[[Sample], None] | None = None,
) -> int:
    """Sample until ``stop`` is set, SIGINT/SIGTERM arrives or ``duration`` passes.

    Returns the number of samples written. Raises DatabaseProblem when the first
    connection fails (a later loss of the server is recorded as a gap instead).
    """
    import psycopg
    from drainwatch.provision.postgres import map_connect_error

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    sql, params = sample_sql(match)

    def connect() -> tuple[Any, int]:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3, application_name=COLLECTOR_APP_NAME)
        max_conn = int(conn.execute("SELECT current_setting('max_connections')").fetchone()[0])
        return conn, max_conn

    try:
        conn, max_conn = connect()
    except psycopg.OperationalError as exc:
        raise map_connect_error(exc, dsn) from None

    written, backoff = 0, interval
    start = time.monotonic()
    wall_offset = time.time() - start
    end = start + duration if duration else float("inf")
    slot = 0
    with SampleWriter(out) as writer:
        try:
            while not stop.is_set():
                due = start + slot * interval
                if due >= end:
                    break
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                now = time.monotonic()
                late_ms = (now - due) * 1000
                try:
                    if conn is None:
                        conn, max_conn = connect()
                        backoff = interval
                    rows = conn.execute(sql, params).fetchall()
                    sample = to_sample(now + wall_offset, rows, max_conn, late_ms)
                except psycopg.Error as exc:
                    log.warning("collector lost PostgreSQL: %s", str(exc).strip().splitlines()[:1])
                    sample = Sample(t=now + wall_offset, gap=1, late_ms=round(late_ms, 2))
                    if conn is not None:
                        conn.close()
                    conn = None
                writer.write(sample)
                if on_sample is not None:
                    on_sample(sample)
                written += 1
                if sample.gap:
                    if stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, 2.0)
                # Skip slots that have already passed rather than bursting to catch up.
                slot = max(slot + 1, int((time.monotonic() - start) / interval) + 1)
        finally:
            if conn is not None:
                conn.close()
    return written


@asynccontextmanager
async def collector_process(
    dsn: str, match: Match, out: Path, *, interval: float, log_path: Path, metrics_port: int | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``drainwatch collect`` as a sidecar process writing ``out`` until exit."""
    argv = [sys.executable, "-m", "drainwatch", "collect", "--out", str(out), "--interval", f"{interval:g}"]
    if metrics_port:
        argv += ["--metrics-port", str(metrics_port)]
    for flag, value in (
        ("--app-name", match.application_name), ("--usename", match.usename),
        ("--datname", match.datname), ("--client-addr", match.client_addr),
    ):  # fmt: skip
        if value:
            argv += [flag, value]
    # The DSN (it may hold a password) travels in the environment, never in argv.
    async with managed_process(
        argv, name="collector", log_path=log_path, env={"DRAINWATCH_DSN": dsn}, stop_signal=signal.SIGTERM, grace=5
    ) as proc:
        yield proc


def read_last_sample(path: Path) -> dict[str, str] | None:
    """The newest complete row of a samples file, reading only its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    header = Sample.columns()
    for line in reversed(lines):
        values = line.split(",")
        if len(values) == len(header) and values[0] != "t":
            return dict(zip(header, values))
    return None
