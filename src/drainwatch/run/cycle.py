"""One cycle of a run: warm-up → baseline → load → settle → forensics → probe → verdict.

``--isolate`` and ``--sweep-disconnect`` repeat it (``drainwatch.run.cycles``); a plain run
has one. Settle waits until the target's connections are *frozen*: none active, none
changing state, so a request still running for a client that left (zombie work) is waited
for and never called held.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drainwatch.errors import DatabaseProblem, DrainwatchError, first_leaf
from drainwatch.judge import forensics
from drainwatch.judge.attribution import attribute, with_checkouts
from drainwatch.judge.hangups import hangups
from drainwatch.judge.load import kind_counts
from drainwatch.judge.probe import ProbeResult
from drainwatch.judge.server import server_check_numbers
from drainwatch.judge.verdict import Evidence, Verdict, judge
from drainwatch.plan import Match, RunConfig
from drainwatch.provision.locust import LoadPlan, run_load, scenario_file
from drainwatch.provision.pgbouncer import Pooler
from drainwatch.provision.postgres import Database, Watch
from drainwatch.provision.target import Target, read_pool_view
from drainwatch.report.checkpoints import checkpoint_reports
from drainwatch.run.evidence import (
    active_samples,
    cancel_times,
    load_counts,
    load_holds,
    locust_rows,
    peak_of_everyone,
    read_requests,
    refusals,
)
from drainwatch.run.faults import DockerControl, inject
from drainwatch.run.live import Display
from drainwatch.run.probe import probe
from drainwatch.run.record import RunRecord
from drainwatch.run.warmup import warm_up
from drainwatch.rundir import (
    BASELINE_CONNECTIONS_CSV,
    LINGERING_COLUMNS,
    LINGERING_CSV,
    LOGS,
    PGBOUNCER_CSV,
    POOL_VIEW_JSON,
    PROBE_CSV,
    SAMPLES_CSV,
    WARMUP_PREFIX,
    read_json,
    write_json,
)
from drainwatch.sample.collector import read_samples
from drainwatch.sample.pooler import last_pools
from drainwatch.traffic import Request

SETTLE_MIN = 3.0  # in-flight work drains for at least this long before settle may end
SETTLE_QUIET = 3.0  # ...and every connection of the target must stay frozen this long


@dataclass
class RunContext:
    """What every cycle of a run works with."""

    cfg: RunConfig
    run_dir: Path
    record: RunRecord
    display: Display
    db: Database
    target: Target
    match: Match
    collector: asyncio.subprocess.Process
    watch: Watch
    probe_request: Request
    reserved: int = 0  # server slots ordinary clients cannot use
    docker: DockerControl | None = None
    cycles: int = 0
    pid_file: Path | None = None  # the target's pid, for selection by socket
    pooler: Pooler | None = None  # PgBouncer between the target and PostgreSQL (--via-pgbouncer)

    async def restart_target(self) -> None:
        """A fresh service between cycles, so one cycle's exhausted pool cannot spill into the next."""
        assert self.target.restart is not None
        pid = await self.target.restart()
        self.record.started("target", pid)
        if self.pid_file is not None and self.pooler is None:  # behind a pooler, its sockets are the selection
            self.pid_file.write_text(str(pid))


def _taken_since(view: dict[str, Any] | None, since: float) -> dict[str, Any] | None:
    """The pool view with the checkouts taken before ``since`` left out, and out of its count."""
    if view is None or not view.get("checkouts"):
        return view
    earlier = [c for c in view["checkouts"] if float(c.get("taken_t") or 0) < since]
    kept = [c for c in view["checkouts"] if float(c.get("taken_t") or 0) >= since]
    return {**view, "checkouts": kept, "checked_out": max(0, int(view["checked_out"]) - len(earlier))}


async def cycle(
    run: RunContext, prefix: str, mix: Mapping[str, int], csv_name: str, extra_env: Mapping[str, str] | None = None
) -> Verdict:
    """Run one cycle with its phases named ``prefix`` + phase; returns its verdict."""
    cfg, run_dir, record = run.cfg, run.run_dir, run.record
    first = run.cycles == 0
    run.cycles += 1
    env = _locust_env(run, mix, csv_name, extra_env)
    await _warmup(run, prefix, env)
    at_baseline = await _baseline(run, prefix, first)
    pool_views = {"baseline": await read_pool_view(run.target)}
    await _load(run, prefix, csv_name, env)
    pool_views["load_end"] = await read_pool_view(run.target, fresh=False)  # the holds given back during the load
    with record.phase(f"{prefix}settle"):
        run.display.phase(f"{prefix}settle", cfg.settle)
        await settle(run, cfg.settle)
    lingering, snapshot_note = await _lingering(run, forensics.learn(at_baseline))
    requests = read_requests(sorted(run_dir.glob(f"requests-{csv_name}-*.csv")))
    lingering = attribute(lingering, requests)
    pool_views["final"] = await read_pool_view(run.target)
    if prefix:  # one kind of --isolate/--sweep: what an earlier cycle (or preflight) left is not its own
        pool_views["final"] = _taken_since(pool_views["final"], record.phases[f"{prefix}warmup"][0])
    lingering = with_checkouts(lingering, pool_views["final"], requests)  # where and by which request it was taken
    views = read_json(run_dir / POOL_VIEW_JSON) if not first else {}
    write_json(run_dir / POOL_VIEW_JSON, views | ({prefix.rstrip("/"): pool_views} if prefix else pool_views))
    write_connections(run_dir / LINGERING_CSV, lingering, append=not first)
    result = await _probe(run, prefix, first)
    phases = {name: record.phases[f"{prefix}{name}"] for name in ("warmup", "baseline", "load", "settle")}
    kinds = _load_kinds(run, csv_name, requests)
    notes = [snapshot_note] if snapshot_note else []
    if cfg.rate and (note := _rate_note(cfg.rate, requests, *phases["load"])):
        notes.append(note)
    verdict = judge(
        Evidence(
            read_samples(run_dir / SAMPLES_CSV, phases),
            phases,
            lingering,
            result,
            tolerance=cfg.tolerance,
            pool_view=pool_views["final"],
            collector_lost=run.collector.returncode is not None,
            load={**load_counts(run_dir / csv_name), "users": cfg.users},
            load_kinds=kinds,
            server=_server(run),
            at_baseline=at_baseline,
            pooler=_pooler(run, phases),
            hangups=_hangups(run, requests, phases["load"][0], phases["settle"][1]),
            holds=load_holds(pool_views["baseline"], pool_views.get("load_end")),
            notes=notes,
        )
    )
    if verdict.never_reused:  # lingering.csv says which idle connections no pool holds
        _mark_never_reused(run_dir / LINGERING_CSV, set(verdict.never_reused))
    return verdict


def _locust_env(
    run: RunContext, mix: Mapping[str, int], csv_name: str, extra_env: Mapping[str, str] | None
) -> dict[str, str]:
    """What the scenarios read from their environment for this cycle: the traffic, the mix, the log."""
    cfg = run.cfg
    return {
        **cfg.traffic.env(),
        "DRAINWATCH_MIX": ",".join(f"{k}={w}" for k, w in mix.items()),
        "PYTHONUNBUFFERED": "1",
        "DRAINWATCH_REQUESTS_CSV": str(run.run_dir / f"requests-{csv_name}"),
        **({"DRAINWATCH_RATE_PER_USER": f"{cfg.rate / cfg.users:.6g}"} if cfg.rate else {}),
        **(extra_env or {}),
    }


def _load_kinds(run: RunContext, csv_name: str, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per chaos kind, what the load's requests did (Locust's CSVs), failures during faults set apart."""
    prefix = run.run_dir / csv_name
    kinds = _outside_faults(
        kind_counts(locust_rows(prefix, "stats"), locust_rows(prefix, "failures")),
        requests,
        run.record.data.get("faults") or [],
    )
    if run.cfg.sweep_disconnect and "disconnect" in kinds:
        kinds["disconnect"]["sweep"] = True
    return kinds


def _rate_note(asked: float, requests: list[dict[str, Any]], start: float, end: float) -> str:
    """Said when the load fell short of --rate: the soak did not run at the rate it states."""
    sent = [r["start"] for r in requests if start <= r["start"] <= end]  # the scenarios' own log: every request
    if not sent:
        return ""
    reached = len(sent) / max(end - min(sent), 1e-9)  # from the first request: Locust takes a moment to start
    if reached >= 0.9 * asked:
        return ""
    return (
        f"the load reached {reached:.1f} req/s of the {asked:g} asked for (--rate): the service answers slower "
        "than that with these users; add --users"
    )


def _hangups(run: RunContext, requests: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Per disconnect request, whether its hang-ups reached the server's work (the log only where it is ours)."""
    log = run.run_dir / LOGS / "postgres.log" if run.db.embedded else None
    return hangups(requests, active_samples(run.run_dir / SAMPLES_CSV, start, end), cancel_times(log))


async def _warmup(run: RunContext, prefix: str, env: dict[str, str]) -> None:
    cfg, logs = run.cfg, run.run_dir / LOGS
    locustfile = scenario_file("steady") if cfg.traffic.steady else cfg.locustfile or scenario_file("steady")
    with run.record.phase(f"{prefix}warmup"):
        run.display.phase(f"{prefix}warm-up", cfg.warmup, history=run.run_dir / f"{WARMUP_PREFIX}_stats_history.csv")
        load = run_load(
            _plan(run, locustfile, cfg.warmup, run.run_dir / WARMUP_PREFIX, logs / "locust-warmup.log", env),
            on_start=lambda name, pid: run.record.started(f"{name}-warmup", pid),
        )
        ended = await warm_up(load, run.run_dir / SAMPLES_CSV, cfg.warmup)
    if ended is not None:  # the pools stopped growing before --warmup ran out
        run.record.set(
            "warmup_ended_s", {**run.record.data.get("warmup_ended_s", {}), prefix.rstrip("/") or "run": ended}
        )


async def _baseline(run: RunContext, prefix: str, first: bool) -> list[dict[str, Any]]:
    """The quiet window; returns the connections as they stand at its end (every one back in its pool)."""
    with run.record.phase(f"{prefix}baseline"):
        run.display.phase(f"{prefix}baseline", run.cfg.baseline)
        await asyncio.sleep(run.cfg.baseline)
    run.display.baseline = _median_total(run.run_dir / SAMPLES_CSV, *run.record.phases[f"{prefix}baseline"])
    try:
        rows = forensics.classify(await snapshot(run.watch, run.match))
    except DatabaseProblem:
        rows = []
    write_connections(run.run_dir / BASELINE_CONNECTIONS_CSV, rows, append=not first)
    return rows


async def _load(run: RunContext, prefix: str, csv_name: str, env: dict[str, str]) -> None:
    cfg, logs = run.cfg, run.run_dir / LOGS
    with run.record.phase(f"{prefix}load"):
        locustfile = cfg.locustfile or scenario_file("mixed")
        run.display.phase(f"{prefix}load", cfg.duration, history=run.run_dir / f"{csv_name}_stats_history.csv")
        checkpoints = asyncio.create_task(checkpoint_reports(run.run_dir, cfg.duration, cfg.checkpoint_every))
        try:
            async with asyncio.TaskGroup() as faults:
                if cfg.faults:
                    faults.create_task(
                        inject(
                            cfg.faults,
                            load_start=time.time(),
                            db=run.db,
                            target=run.target,
                            match=run.match,
                            on_event=lambda event: _fault_event(run.record, event),
                            docker=run.docker,
                            pooler=run.pooler,
                        )
                    )
                await run_load(
                    _plan(run, locustfile, cfg.duration, run.run_dir / csv_name, logs / f"{csv_name}.log", env),
                    on_start=run.record.started,
                )
        except* DrainwatchError as group:  # Locust refused the locustfile, or a fault could not be injected
            raise first_leaf(group) from None
        finally:
            checkpoints.cancel()
            await asyncio.wait([checkpoints])  # reaps it without swallowing our own cancellation


async def _lingering(run: RunContext, resets: forensics.Resets) -> tuple[list[dict[str, Any]], str]:
    """The target's connections after settle, classified; on drainwatch's own connection."""
    try:
        return forensics.classify(await snapshot(run.watch, run.match), recent=SETTLE_QUIET, resets=resets), ""
    except DatabaseProblem as exc:
        return [], (
            f"the connections left open could not be listed ({exc}): the verdict rests on the collector's "
            "samples and the probe"
        )


async def _probe(run: RunContext, prefix: str, first: bool) -> ProbeResult:
    with run.record.phase(f"{prefix}probe"):
        run.display.phase(f"{prefix}probe")
        result = await probe(
            run.target.url,
            run.probe_request,
            count=run.cfg.probe_count,
            timeout=run.cfg.probe_timeout,
            out=run.run_dir / PROBE_CSV,
            append=not first,
        )
        pid = run.record.data["processes"].get("target")  # the current one: --isolate restarts it
        if pid is not None and not alive(pid):
            result.target_alive = False
            result.detail = result.detail or "the target process has exited"
    return result


def _pooler(run: RunContext, phases: dict[str, tuple[float, float]]) -> dict[str, Any] | None:
    """PgBouncer's counts at baseline and after settle, with its pool mode; None with no pooler."""
    if run.pooler is None:
        return None
    path = run.run_dir / PGBOUNCER_CSV
    return {
        "mode": run.pooler.mode,
        "pool_size": run.pooler.pool_size,
        "baseline": last_pools(path, before=phases["baseline"][1]),
        "final": last_pools(path, before=phases["settle"][1]),  # not the probe's own requests after it
    }


def _server(run: RunContext) -> dict[str, Any]:
    log = run.run_dir / LOGS / "postgres.log" if run.db.embedded else None
    return server_check_numbers(
        run.db.max_connections, run.reserved, peak_of_everyone(run.run_dir / SAMPLES_CSV), refusals(log)
    )


async def settle(run: RunContext, longest: float) -> None:
    """Wait until every connection of the target is frozen (nothing active, no state change) for
    SETTLE_QUIET, or ``longest`` passes. Falls back on the collector's samples when the
    snapshot cannot be taken."""
    start = time.monotonic()
    quiet_since: float | None = None
    last: Any = None
    while (elapsed := time.monotonic() - start) < longest and run.collector.returncode is None:
        await asyncio.sleep(max(run.cfg.interval, 0.25))
        state = await _frozen_key(run)
        busy = state is None or state != last
        last = state
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif elapsed >= SETTLE_MIN and time.monotonic() - quiet_since >= SETTLE_QUIET:
            return


async def _frozen_key(run: RunContext) -> Any:
    """What must not change while the target is quiet; None while anything is active."""
    try:
        rows = await snapshot(run.watch, run.match)
    except DatabaseProblem:
        from drainwatch.sample.collector import read_last_sample

        row = read_last_sample(run.run_dir / SAMPLES_CSV)
        if row is None or row["gap"] == "1" or row["active"] != "0":
            return None
        return (row["total"], row["idle_in_transaction"], row["idle_in_transaction_aborted"])
    if any(r["state"] == "active" for r in rows):
        return None
    return frozenset((r["pid"], r["state"], round(r["state_age_s"] - r["backend_age_s"], 2)) for r in rows)


async def snapshot(watch: Watch, match: Match) -> list[dict[str, Any]]:
    """The target's connections now, on drainwatch's own connection. Raises DatabaseProblem."""
    sql, params = forensics.snapshot_sql(match, watch.dsn)
    return await watch.rows(sql, params)


def write_connections(path: Path, rows: list[dict[str, Any]], *, append: bool = False) -> None:
    with open(path, "a" if append else "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LINGERING_COLUMNS, extrasaction="ignore")
        if not append:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})


FAULT_RECOVERY = 2.0  # seconds after an injected fault ends during which its effects may still fail requests


def _outside_faults(
    kinds: dict[str, dict[str, Any]], requests: list[dict[str, Any]], faults: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The steady kind's failures without those during a fault drainwatch injected (and its
    recovery): a restarted server fails requests by design, and that is not the service saturating."""
    steady = kinds.get("steady")
    windows = [(f["start"], f.get("end", f["start"]) + FAULT_RECOVERY) for f in faults if "start" in f]
    if not steady or not windows:
        return kinds
    during = sum(
        1
        for r in requests
        if r.get("scenario") == "steady"
        and r.get("outcome") == "failed"
        and not str(r.get("detail", "")).startswith("HTTP 4")
        and any(start <= r["end"] and r["start"] <= end for start, end in windows)
    )
    return {**kinds, "steady": {**steady, "failed": max(0, steady["failed"] - during), "failed_in_faults": during}}


NEVER_REUSED = "never_reused"  # lingering.csv's kind for an idle connection that served one request, in no pool


def _mark_never_reused(path: Path, pids: set[int]) -> None:
    """Rewrite lingering.csv with the kind of those connections the verdict found never reused."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row.get("pid", "").isdigit() and int(row["pid"]) in pids and row.get("kind") in ("pooled", "unsure"):
            row["kind"] = NEVER_REUSED
    write_connections(path, rows)


def _fault_event(record: RunRecord, event: dict[str, Any]) -> None:
    if "postgres_pid" in event:  # a restarted PostgreSQL is a new process to account for
        record.started("postgres", event["postgres_pid"])
        return
    record.data.setdefault("faults", []).append(event)
    record.save()


def _plan(
    run: RunContext, locustfile: Path, seconds: float, prefix: Path, log_path: Path, env: dict[str, str]
) -> LoadPlan:
    cfg = run.cfg
    return LoadPlan(
        locustfile=locustfile,
        host=run.target.url,
        users=cfg.users,
        spawn_rate=cfg.spawn_rate,
        seconds=seconds,
        csv_prefix=prefix,
        log_path=log_path,
        env=env,
        workers=cfg.workers,
    )


def _median_total(path: Path, start: float, end: float) -> float | None:
    totals = sorted(float(r["total"]) for r in read_samples(path, {"baseline": (start, end)}) if r["gap"] == "0")
    return totals[len(totals) // 2] if totals else None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has exited, whether or not it was reaped)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True
