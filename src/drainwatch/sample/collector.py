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
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from drainwatch.plan import Match
from drainwatch.provision.processes import managed_process
from drainwatch.sample.selector import COLLECTOR_APP_NAME, resolve

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
    # the target's backends opened since the previous reading (and still open now): a pool opens a
    # few and reuses them, a connection per request opens one for every request
    opened: int = 0

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def sample_sql(match: Match, dsn: str = "", since: float | None = None) -> tuple[str, dict[str, Any]]:
    """The sampling query; with a process-selected target its sockets are looked up now.
    ``since`` is the server's clock at the previous reading: backends started after it are new."""
    where, params = resolve(match, dsn)
    params = {**params, "since": since}
    # Only the target's rows are split by application_name (for the live endpoint's per-pool
    # counts): the server's other clients, however many names they use, stay one row per state.
    sql = f"""
        SELECT mine, state, count(*) AS n,
               coalesce(extract(epoch FROM max(now() - state_change)), 0)::float8 AS oldest,
               CASE WHEN mine THEN application_name ELSE '' END AS application_name,
               count(*) FILTER (WHERE backend_start > to_timestamp(%(since)s)) AS opened,
               extract(epoch FROM now())::float8 AS server_now
        FROM (
            SELECT ({where}) AS mine, coalesce(state, '') AS state, state_change, backend_start,
                   coalesce(application_name, '') AS application_name
            FROM pg_stat_activity
            WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
        ) AS backends
        GROUP BY 1, 2, 5
    """
    return sql, params


def to_sample(t: float, rows: Iterable[Sequence[Any]], max_connections: int, late_ms: float = 0.0) -> Sample:
    """Fold ``(mine, state, count, oldest_age_s[, application_name, opened, server_now])`` rows into one
    Sample (pure: no database)."""
    sample = Sample(t=t, max_connections=max_connections, late_ms=round(late_ms, 2))
    for mine, state, n, oldest, *more in rows:
        n = int(n)
        sample.all_client_backends += n
        if not mine:
            continue
        sample.total += n
        sample.opened += int(more[1] or 0) if len(more) > 1 else 0
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


# application_name → Sample state column → the target's backends: for the live endpoint only,
# kept out of Sample because the CSV's columns are a fixed record and names are unbounded.
Pools = dict[str, dict[str, int]]


def to_pools(rows: Iterable[Sequence[Any]]) -> Pools:
    """The target's backends of ``sample_sql`` rows by application_name and state (pure)."""
    pools: Pools = {}
    for mine, state, n, _oldest, application_name, *_ in rows:
        if mine:
            counts = pools.setdefault(application_name, {})
            column = STATES.get(state, "other")
            counts[column] = counts.get(column, 0) + int(n)
    return pools


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


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """While inside, SIGINT and SIGTERM set ``stop``; the previous handlers come back after.

    Only the main thread may install handlers: elsewhere ``stop`` is the only way to stop.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Source:
    """The collector's own connection to PostgreSQL: a reading per call, a gap while it is lost."""

    def __init__(self, dsn: str, match: Match, interval: float) -> None:
        self.dsn, self.interval, self.match = dsn, interval, match
        self.conn: Any = None
        self.max_conn = 0
        self.backoff = interval
        self.since: float | None = None  # the server's clock at the previous reading

    def open(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3, application_name=COLLECTOR_APP_NAME)
        self.max_conn = int(self.conn.execute("SELECT current_setting('max_connections')").fetchone()[0])
        self.backoff = self.interval

    def read(self, t: float, late_ms: float) -> tuple[Sample, Pools]:
        import psycopg

        try:
            if self.conn is None:
                self.open()
            sql, params = sample_sql(self.match, self.dsn, self.since)
            rows = self.conn.execute(sql, params).fetchall()
            if rows:
                self.since = float(rows[0][-1])
            return to_sample(t, rows, self.max_conn, late_ms), to_pools(rows)
        except psycopg.Error as exc:
            log.warning("collector lost PostgreSQL: %s", str(exc).strip().splitlines()[:1])
            self.close()
            return Sample(t=t, gap=1, late_ms=round(late_ms, 2)), {}

    def next_backoff(self) -> float:
        """How long to wait after a gap: doubling, at most 2 s."""
        wait, self.backoff = self.backoff, min(self.backoff * 2, 2.0)
        return wait

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def _slots(interval: float, duration: float | None, stop: threading.Event) -> Iterator[tuple[float, float]]:
    """(monotonic now, lateness in ms) at each slot of a fixed schedule until ``stop`` or ``duration``.

    Slots that have already passed are skipped rather than burst through to catch up.
    """
    start = time.monotonic()
    end = start + duration if duration else float("inf")
    slot = 0
    while not stop.is_set():
        due = start + slot * interval
        if due >= end:
            return
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        now = time.monotonic()
        yield now, (now - due) * 1000
        slot = max(slot + 1, int((time.monotonic() - start) / interval) + 1)


def run_collector(
    dsn: str,
    match: Match,
    out: Path,
    *,
    interval: float = 0.25,
    duration: float | None = None,
    stop: threading.Event | None = None,
    on_sample: Callable[[Sample, Pools], None] | None = None,
) -> int:
    """Sample until ``stop`` is set, ``duration`` passes or (without ``stop``, in the main
    thread) SIGINT/SIGTERM arrives; the signal handlers are restored on return.

    ``on_sample`` gets each sample with the same reading's counts by application_name.

    Returns the number of samples written. Raises DatabaseProblem when the first
    connection fails (a later loss of the server is recorded as a gap instead).
    """
    import psycopg

    from drainwatch.provision.postgres import map_connect_error

    source = _Source(dsn, match, interval)
    try:
        source.open()
    except psycopg.OperationalError as exc:
        raise map_connect_error(exc, dsn) from exc
    written = 0
    wall_offset = time.time() - time.monotonic()
    signals = stop_on_signals(threading.Event()) if stop is None else nullcontext(stop)
    with signals as stop, SampleWriter(out) as writer, closing(source):
        for now, late_ms in _slots(interval, duration, stop):
            sample, pools = source.read(now + wall_offset, late_ms)
            writer.write(sample)
            if on_sample is not None:
                on_sample(sample, pools)
            written += 1
            if sample.gap and stop.wait(source.next_backoff()):
                break
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
        ("--app-name", match.application_name),
        ("--usename", match.usename),
        ("--datname", match.datname),
        ("--client-addr", match.client_addr),
        ("--client-pid-file", match.client_pid_file),
    ):
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


def read_samples(path: Path, phases: dict[str, tuple[float, float]] | None = None) -> list[dict[str, str]]:
    """The samples the verdict needs. With ``phases``, a long soak stays small in memory: the
    baseline and settle windows and every gap row in full, the load phase as one row of its
    per-column maxima (the peak) with the connections it opened (``folded``), its first and last
    readings (its counts at either end), and the last reading before the warm-up (the count
    before any traffic)."""
    with open(path, newline="") as handle:
        rows = csv.DictReader(handle)
        if phases is None:
            return list(rows)
        keep_windows = [phases[name] for name in ("baseline", "settle") if name in phases]
        load_start, load_end = phases.get("load", (0.0, 0.0))
        warmup_start = phases.get("warmup", (0.0, 0.0))[0]
        kept: list[dict[str, str]] = []
        peak: dict[str, float] = {}
        ends: list[dict[str, str]] = []  # the load's first and last readings
        opened = 0
        before: dict[str, str] | None = None
        after_gap = False  # the reading that ends a gap tells how long it lasted
        for row in rows:
            t = float(row["t"])
            if t < warmup_start and row["gap"] == "0":
                before = row
            if row["gap"] == "1" or after_gap or any(start <= t <= end for start, end in keep_windows):
                kept.append(row)
                after_gap = row["gap"] == "1"
            elif load_start <= t <= load_end:
                for key in ("total", "active", "idle", "idle_in_transaction", "idle_in_transaction_aborted"):
                    peak[key] = max(peak.get(key, 0.0), float(row[key]))
                opened += int(float(row.get("opened") or 0)) if ends else 0
                ends[1:] = [{**row, "opened": "0"}]
                ends[:1] = ends[:1] or [{**row, "opened": "0"}]
        if peak:
            kept.append({**{k: str(v) for k, v in peak.items()}, "t": str(load_start), "gap": "0"})
            kept[-1] |= {"opened": str(opened), "folded": "1"}
            kept += [row for row in ends if row not in kept]
        if before is not None and before not in kept:
            kept.append(before)
        return sorted(kept, key=lambda row: float(row["t"]))
