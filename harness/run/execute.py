"""One run, phase by phase: provision → warm-up → baseline → load → settle → probe → verdict → report.

Every resource is an async context manager in one exit stack, so they are torn down in
reverse order (locust → collector → target → postgres) on success, error or interrupt.
Whatever happens, the run directory ends with ``run.json`` and whatever was collected,
and a report is rendered from it.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from drainwatch.errors import DrainwatchError
from drainwatch.judge import forensics
from drainwatch.judge.probe import probe
from drainwatch.judge.verdict import Verdict, judge
from drainwatch.plan import RunConfig
from drainwatch.provision.locust import LoadPlan, run_load, scenario_file
from drainwatch.provision.postgres import Database, connect, embedded_postgres, external_postgres
from drainwatch.provision.target import Target, demo_service, external_target, read_pool_view
from drainwatch.report.forecast import Production, from_run_dir
from drainwatch.report.outputs import write_junit, write_summary
from drainwatch.run.cycles import isolated, swept
from drainwatch.run.faults import DockerControl, inject
from drainwatch.run.live import Display
from drainwatch.run.record import RunRecord
from drainwatch.rundir import (
    BASELINE_CONNECTIONS_CSV,
    LINGERING_COLUMNS,
    LINGERING_CSV,
    LOCUST_PREFIX,
    LOGS,
    POOL_VIEW_JSON,
    PROBE_CSV,
    RUN_DIR_NOTE,
    SAMPLES_CSV,
    WARMUP_PREFIX,
    make_run_dir,
    read_json,
    write_json,
)
from drainwatch.sample.collector import collector_process, read_last_sample

log = logging.getLogger(__name__)

SETTLE_MIN = 3.0  # in-flight work drains for at least this long before settle may end
SETTLE_QUIET = 3.0  # ...and the counts must stay still, nothing active or in a transaction, this long


async def execute(cfg: RunConfig, display: Display) -> Verdict | None:
    """Run the whole job into ``cfg.run_dir``. Returns the verdict (None if it never got one).

    Raises DrainwatchError for environment problems and CancelledError on interrupt,
    after writing what was collected.
    """
    docker = await preflight(cfg)
    run_dir = cfg.run_dir
    make_run_dir(run_dir)
    logs = run_dir / LOGS
    samples = run_dir / SAMPLES_CSV
    record = RunRecord(cfg)
    display.samples = samples
    verdict: Verdict | None = None
    status, error = "error", None
    try:
        async with display.running(), AsyncExitStack() as stack:
            with record.phase("provision"):
                display.phase("provision")
                db = await stack.enter_async_context(
                    external_postgres(cfg.dsn) if cfg.dsn else embedded_postgres(logs / "postgres.log")
                )
                record.set("database", {"dsn": db.display, "embedded": db.embedded, "version": db.version,
                                        "max_connections": db.max_connections})  # fmt: skip
                record.started("postgres", db.pid)
                record.data["versions"]["postgresql"] = db.version
                target = await stack.enter_async_context(
                    external_target(cfg.target_url, cfg.pool_limit, cfg.pool_view) if cfg.target_url
                    else demo_service(cfg.variant, db.dsn, logs / "target.log")
                )  # fmt: skip
                match = cfg.match if any(vars(cfg.match).values()) else replace(cfg.match, application_name=target.app_name)
                record.set("target", {"url": target.url, "pid": target.pid, "match": vars(match),
                                      "pool_limit": target.pool_limit})  # fmt: skip
                record.started("target", target.pid)
                display.pool_limit = target.pool_limit
                collector = await stack.enter_async_context(
                    collector_process(db.dsn, match, samples, interval=cfg.interval, log_path=logs / "collector.log",
                                      metrics_port=cfg.metrics_port)
                )
                record.started("collector", collector.pid)
                await _first_sample(samples, logs / "collector.log")
                display.message(f"PostgreSQL {db.version} at {db.display}; target {target.url}; "
                                f"watching backends matching {_describe(match)}")  # fmt: skip

            run = _Run(cfg, run_dir, record, display, db, target, match, collector, docker)
            if cfg.sweep_disconnect:
                verdict = await swept(run, _cycle)
            elif cfg.isolate:
                verdict = await isolated(run, _cycle)
            else:
                verdict = await _cycle(run, "", cfg.mix, LOCUST_PREFIX)
            status = "completed"
    except asyncio.CancelledError:
        status = "interrupted"
        raise
    except DrainwatchError as exc:
        error = str(exc)
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        exc.add_note(f"{RUN_DIR_NOTE}{run_dir}")
        raise
    finally:
        record.finish(status, error)
        _write_outputs(run_dir, record, verdict, cfg)
    return verdict


def _forecast(run_dir: Path, record: RunRecord, cfg: RunConfig) -> dict[str, Any] | None:
    """The outage forecast, when production figures were given."""
    pool = cfg.prod_pool or record.data["target"].get("pool_limit")
    if not cfg.prod_rps or not pool:
        return None
    return from_run_dir(run_dir, Production(cfg.prod_rps, cfg.prod_shares, int(pool))).to_dict()


async def preflight(cfg: RunConfig) -> DockerControl | None:
    """Check what was given from outside (database, target, Docker) before anything is written.

    Returns the Docker control for faults on compose containers, if asked for. Raises
    DatabaseProblem, TargetProblem or UsageError naming the fix.
    """
    if cfg.dsn:
        async with external_postgres(cfg.dsn):
            pass
    if cfg.target_url:
        async with external_target(cfg.target_url, cfg.pool_limit, cfg.pool_view):
            pass
    if cfg.docker_postgres or cfg.docker_target:
        return await asyncio.to_thread(DockerControl.connect, cfg.docker_postgres, cfg.docker_target)
    return None


# Seconds between report checkpoints during a long load (an aborted soak still has a report).
CHECKPOINT_EVERY = float(os.environ.get("DRAINWATCH_CHECKPOINT_EVERY", "600"))


async def _checkpoint_reports(run_dir: Path, duration: float) -> None:
    """Render report.html now and then during a long load, so an aborted soak still has one."""
    from drainwatch.report import render_report

    for _ in range(int(duration // CHECKPOINT_EVERY)):
        await asyncio.sleep(CHECKPOINT_EVERY)
        try:
            await asyncio.to_thread(render_report, run_dir)
        except Exception:  # a checkpoint is a convenience; the final report is what counts
            log.warning("report checkpoint failed", exc_info=True)


@dataclass
class _Run:
    """What every cycle of a run works with."""

    cfg: RunConfig
    run_dir: Path
    record: RunRecord
    display: Display
    db: Database
    target: Target
    match: Any
    collector: asyncio.subprocess.Process
    docker: DockerControl | None = None
    cycles: int = 0


async def _cycle(run: _Run, prefix: str, mix: dict[str, int], csv_name: str, extra_env: dict[str, str] | None = None) -> Verdict:
    """warm-up → baseline → load → settle → forensics → probe → verdict, with phases named ``prefix``+phase."""
    cfg, run_dir, record, display, db, target, match = run.cfg, run.run_dir, run.record, run.display, run.db, run.target, run.match
    logs, samples = run_dir / LOGS, run_dir / SAMPLES_CSV
    first = run.cycles == 0
    run.cycles += 1
    env = _scenario_env(cfg, mix) | (extra_env or {})
    with record.phase(f"{prefix}warmup"):
        display.phase(f"{prefix}warm-up", cfg.warmup, history=run_dir / f"{WARMUP_PREFIX}_stats_history.csv")
        await run_load(_plan(cfg, target, scenario_file("steady"), cfg.warmup, run_dir / WARMUP_PREFIX, logs / "locust-warmup.log", env),
                       on_start=lambda name, pid: record.started(f"{name}-warmup", pid))

    with record.phase(f"{prefix}baseline"):
        display.phase(f"{prefix}baseline", cfg.baseline)
        await asyncio.sleep(cfg.baseline)
    display.baseline = _median_total(samples, *record.phases[f"{prefix}baseline"])
    # Every connection is back in its pool now: learn which pools reset what they get back.
    at_baseline = forensics.classify(await _snapshot(db, match))
    _write_lingering(run_dir / BASELINE_CONNECTIONS_CSV, at_baseline, append=not first)
    resetting = forensics.resetting_apps(at_baseline)
    pool_views = {"baseline": await read_pool_view(target)}

    with record.phase(f"{prefix}load"):
        locustfile = cfg.locustfile or scenario_file("mixed")
        display.phase(f"{prefix}load", cfg.duration, history=run_dir / f"{csv_name}_stats_history.csv")
        checkpoints = asyncio.create_task(_checkpoint_reports(run_dir, cfg.duration))
        try:
            async with asyncio.TaskGroup() as faults:
                if cfg.faults:
                    faults.create_task(inject(cfg.faults, load_start=time.time(), db=db, target=target, match=match,
                                              on_event=lambda event: _fault_event(record, event), docker=run.docker))  # fmt: skip
                await run_load(_plan(cfg, target, locustfile, cfg.duration, run_dir / csv_name, logs / f"{csv_name}.log", env),
                               on_start=record.started)
        finally:
            checkpoints.cancel()
            await asyncio.wait([checkpoints])  # reaps it without swallowing our own cancellation

    with record.phase(f"{prefix}settle"):
        display.phase(f"{prefix}settle", cfg.settle)
        await _settle(samples, cfg.settle, cfg.interval, run.collector)
    lingering = forensics.classify(await _snapshot(db, match), resetting)
    pool_views["final"] = await read_pool_view(target)
    views = read_json(run_dir / POOL_VIEW_JSON) if not first else {}
    write_json(run_dir / POOL_VIEW_JSON, views | ({prefix.rstrip("/"): pool_views} if prefix else pool_views))
    _write_lingering(run_dir / LINGERING_CSV, lingering, append=not first)

    with record.phase(f"{prefix}probe"):
        display.phase(f"{prefix}probe")
        result = await probe(target.url, cfg.probe_path, count=cfg.probe_count,
                             timeout=cfg.probe_timeout, out=run_dir / PROBE_CSV, append=not first)  # fmt: skip
        pid = record.data["processes"].get("target")  # the current one: --isolate restarts it
        if pid is not None and not _alive(pid):
            result.target_alive = False
            result.detail = result.detail or "the target process has exited"

    phases = {name: record.phases[f"{prefix}{name}"] for name in ("baseline", "load", "settle")}
    return judge(_read_samples(samples, phases), phases, lingering, result, tolerance=cfg.tolerance,
                 pool_view=pool_views["final"], collector_lost=run.collector.returncode is not None,
                 load=_load_counts(run_dir / csv_name))  # fmt: skip


def _load_counts(prefix: Path) -> dict[str, int]:
    """Requests Locust sent and exceptions its users raised, from its CSVs (empty if it wrote none)."""
    counts: dict[str, int] = {}
    try:
        with open(f"{prefix}_stats.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("Name") == "Aggregated":
                    counts["requests"] = int(float(row.get("Request Count") or 0))
        with open(f"{prefix}_exceptions.csv", newline="") as handle:
            counts["exceptions"] = sum(int(float(row.get("Count") or 0)) for row in csv.DictReader(handle))
    except (OSError, ValueError):
        pass
    return counts


def _fault_event(record: RunRecord, event: dict[str, Any]) -> None:
    if "postgres_pid" in event:  # a restarted PostgreSQL is a new process to account for
        record.started("postgres", event["postgres_pid"])
        return
    record.data.setdefault("faults", []).append(event)
    record.save()


def _write_outputs(run_dir: Path, record: RunRecord, verdict: Verdict | None, cfg: RunConfig) -> None:
    """summary.json, junit.xml and report.html from what exists; never raises."""
    try:
        extra = {"pool_limit": record.data["target"].get("pool_limit"),
                 "max_connections": record.data["database"].get("max_connections")}  # fmt: skip
        write_summary(run_dir, record.data, verdict, extra)
        if verdict is not None and cfg.prod_rps:
            extra["forecast"] = _forecast(run_dir, record, cfg)
            write_summary(run_dir, record.data, verdict, extra)
        write_junit(run_dir, record.data, verdict)
    except Exception:  # a broken summary must not hide the verdict
        log.exception("could not write summary.json/junit.xml")
    try:
        from drainwatch.report import render_report

        render_report(run_dir)
    except Exception:
        log.exception("could not render report.html")


def _plan(cfg: RunConfig, target: Target, locustfile: Path, seconds: float, prefix: Path, log_path: Path, env: dict[str, str]) -> LoadPlan:
    return LoadPlan(locustfile=locustfile, host=target.url, users=cfg.users, spawn_rate=cfg.spawn_rate,
                    seconds=seconds, csv_prefix=prefix, log_path=log_path, env=env, workers=cfg.workers)  # fmt: skip


def _scenario_env(cfg: RunConfig, mix_weights: dict[str, int]) -> dict[str, str]:
    mix = ",".join(f"{kind}={weight}" for kind, weight in mix_weights.items())
    return {**cfg.locust_env, "DRAINWATCH_MIX": mix, "PYTHONUNBUFFERED": "1"}


def _describe(match: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in vars(match).items() if v) or "every client backend"


async def _first_sample(samples: Path, log_path: Path, timeout: float = 15) -> None:
    from drainwatch.errors import DatabaseProblem
    from drainwatch.provision.processes import tail

    deadline = time.monotonic() + timeout
    while read_last_sample(samples) is None:
        if time.monotonic() > deadline:
            raise DatabaseProblem(f"the collector wrote no sample: {tail(log_path)}", hint="read logs/collector.log")
        await asyncio.sleep(0.1)


async def _settle(samples: Path, longest: float, interval: float, collector: asyncio.subprocess.Process) -> None:
    """Wait until the counts are still (nothing active, nothing in a transaction) or ``longest`` passes."""
    start = time.monotonic()
    quiet_since: float | None = None
    last_total: str | None = None
    while (elapsed := time.monotonic() - start) < longest and collector.returncode is None:
        await asyncio.sleep(max(interval, 0.25))
        row = read_last_sample(samples)
        busy = row is None or row["gap"] == "1" or row["active"] != "0" or row["idle_in_transaction"] != "0" \
            or row["idle_in_transaction_aborted"] != "0" or row["total"] != last_total
        last_total = row["total"] if row else None
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif elapsed >= SETTLE_MIN and time.monotonic() - quiet_since >= SETTLE_QUIET:
            return


async def _snapshot(db: Database, match: Any) -> list[dict[str, Any]]:
    sql, params = forensics.snapshot_sql(match)
    async with await connect(db.dsn) as conn:
        cur = await conn.execute(sql, params)
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row)) for row in await cur.fetchall()]


def _write_lingering(path: Path, rows: list[dict[str, Any]], *, append: bool = False) -> None:
    with open(path, "a" if append else "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LINGERING_COLUMNS, extrasaction="ignore")
        if not append:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})


def _read_samples(path: Path, phases: dict[str, tuple[float, float]] | None = None) -> list[dict[str, str]]:
    """The samples the verdict needs. With ``phases``, a long soak stays small in memory: the
    baseline and settle windows and every gap row in full, the load phase as one row of its
    per-column maxima (the peak is all the verdict takes from it)."""
    with open(path, newline="") as handle:
        rows = csv.DictReader(handle)
        if phases is None:
            return list(rows)
        keep_windows = [phases[name] for name in ("baseline", "settle") if name in phases]
        load_start, load_end = phases.get("load", (0.0, 0.0))
        kept: list[dict[str, str]] = []
        peak: dict[str, float] = {}
        after_gap = False  # the reading that ends a gap tells how long it lasted
        for row in rows:
            t = float(row["t"])
            if row["gap"] == "1" or after_gap or any(start <= t <= end for start, end in keep_windows):
                kept.append(row)
                after_gap = row["gap"] == "1"
            elif load_start <= t <= load_end:
                for key in ("total", "active", "idle", "idle_in_transaction", "idle_in_transaction_aborted"):
                    peak[key] = max(peak.get(key, 0.0), float(row[key]))
        if peak:
            kept.append({**{k: str(v) for k, v in peak.items()}, "t": str(load_start), "gap": "0"})
        return sorted(kept, key=lambda row: float(row["t"]))


def _median_total(path: Path, start: float, end: float) -> float | None:
    totals = sorted(float(r["total"]) for r in _read_samples(path, {"baseline": (start, end)}) if r["gap"] == "0")
    return totals[len(totals) // 2] if totals else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited: its parent (us) has not reaped it yet
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True
