"""One run: provision → preflight → cycle(s) → shutdown check → outputs.

Every resource is an async context manager in one exit stack, so they are torn down in
reverse order (collector → drainwatch's own connection → target → postgres) on success,
error or interrupt. Whatever happens, the run directory ends with ``run.json`` and
whatever was collected, and a report is rendered from it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
import time
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from drainwatch.errors import DrainwatchError, TargetProblem, UsageError
from drainwatch.judge.verdict import Verdict, with_deaths, with_faults, with_service_warnings, with_shutdown
from drainwatch.plan import Match, RunConfig, check_programs, redact_dsn, untested_kinds, untested_note
from drainwatch.provision.locust import check_locustfile
from drainwatch.provision.pgbouncer import Pooler, external_pgbouncer, pgbouncer, show_clients, show_pools
from drainwatch.provision.postgres import Database, Watch, embedded_postgres, external_postgres
from drainwatch.provision.processes import last_words
from drainwatch.provision.target import (
    Target,
    demo_service,
    external_target,
    listening_pid,
    read_pool_view,
    served_service,
    served_stack,
    stack_channel,
)
from drainwatch.report.forecast import Production, from_run_dir
from drainwatch.report.outputs import write_junit, write_summary
from drainwatch.run.cycle import RunContext, cycle, snapshot
from drainwatch.run.cycles import isolated, swept
from drainwatch.run.faults import DockerControl
from drainwatch.run.leftovers import sweep
from drainwatch.run.live import Display
from drainwatch.run.preflight import probe_reaches_database, try_requests
from drainwatch.run.record import RunRecord
from drainwatch.rundir import (
    LOCUST_PREFIX,
    LOGS,
    PGBOUNCER_CSV,
    RUN_DIR_NOTE,
    SAMPLES_CSV,
    SERVICE_WARNINGS_CSV,
    make_run_dir,
)
from drainwatch.sample.collector import collector_process, read_last_sample
from drainwatch.sample.pooler import sample_pools
from drainwatch.sample.service_log import warning_counts, watch_log
from drainwatch.traffic import DEMO_PROBE, Request

log = logging.getLogger(__name__)
DEV_MODE = {"PYTHONDEVMODE": "1"}  # ResourceWarning shown, asyncio's debug mode: the warnings a leak leaves


async def execute(cfg: RunConfig, display: Display) -> Verdict | None:
    """Run the whole job into ``cfg.run_dir``. Returns the verdict (None if it never got one).

    Raises DrainwatchError for environment problems and CancelledError on interrupt,
    after writing what was collected.
    """
    for line in sweep(cfg.run_dir.parent):  # runs killed with -9 into the same folder: what they left
        display.notice(line)
    docker = await preflight(cfg)
    run_dir = cfg.run_dir
    make_run_dir(run_dir)
    record = RunRecord(cfg)
    display.samples = run_dir / SAMPLES_CSV
    verdict: Verdict | None = None
    status, error = "error", None
    try:
        async with display.running(), AsyncExitStack() as stack:
            run = await _provision(stack, cfg, record, display, docker)
            await _try_requests(run)
            if cfg.sweep_disconnect:
                verdict = await swept(run, cycle)
            elif cfg.isolate:
                verdict = await isolated(run, cycle)
            else:
                verdict = await cycle(run, "", cfg.mix, LOCUST_PREFIX)
            verdict = with_faults(verdict, record.data.get("faults") or [])
            if deaths := _deaths(run):  # what died mid-run is the story: no diagnosis of the service
                verdict = with_deaths(verdict, deaths)
            elif run.target.kind == "served":
                verdict = with_shutdown(verdict, await _shutdown(run))
            status = "completed"
        if verdict is not None and not cfg.target_url:  # after the service stopped: its last words count
            verdict = with_service_warnings(verdict, warning_counts(run_dir / SERVICE_WARNINGS_CSV))
        if verdict is not None and (untested := untested_kinds(cfg)):
            verdict = replace(verdict, reasons=[*verdict.reasons, untested_note(untested)])
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
        try:
            if cfg.serve and (pid := record.data["target"].get("pid")):  # what it imported, however it ended
                record.data["target"]["versions"] = served_stack(stack_channel(run_dir / LOGS / "target.log"), pid)
        finally:
            record.finish(status, error)
            _write_outputs(run_dir, record, verdict, cfg)
    return verdict


async def check(cfg: RunConfig, display: Display) -> dict[str, Any]:
    """Everything a run does before warm-up, then stop: the plan, the database, the service, each
    request tried once and the probe seen reaching the database. Nothing is kept.

    Returns what was found. Raises DrainwatchError naming the fix, as a run would.
    """
    docker = await preflight(cfg)
    with tempfile.TemporaryDirectory(prefix="drainwatch-check-") as folder:
        cfg = replace(cfg, out=Path(folder), run_id="check")
        make_run_dir(cfg.run_dir)
        record = RunRecord(cfg)
        async with AsyncExitStack() as stack:
            run = await _provision(stack, cfg, record, display, docker)
            await _try_requests(run)
        return {
            "target": record.data["target"],
            "database": record.data["database"],
            "preflight": record.data.get("preflight"),
            "probe": str(run.probe_request),
        }


async def preflight(cfg: RunConfig) -> DockerControl | None:
    """Check what was given from outside (database, target, Docker) before anything is written.

    Returns the Docker control for faults on compose containers, if asked for. Raises
    DatabaseProblem, TargetProblem or UsageError naming the fix.
    """
    check_programs(cfg)
    if cfg.locustfile:
        await check_locustfile(cfg.locustfile, cfg.traffic.env())
    if cfg.dsn:
        async with external_postgres(cfg.dsn):
            pass
    if cfg.target_url:
        async with external_target(cfg.target_url, cfg.pool_limit, cfg.pool_view):
            pass
    if cfg.pgbouncer and cfg.dsn:
        await external_pgbouncer(cfg.pgbouncer, cfg.dsn)
    if cfg.docker_postgres or cfg.docker_target:
        return await asyncio.to_thread(DockerControl.connect, cfg.docker_postgres, cfg.docker_target)
    return None


async def _provision(
    stack: AsyncExitStack, cfg: RunConfig, record: RunRecord, display: Display, docker: DockerControl | None
) -> RunContext:
    """Start (or reach) every resource of the run, each owned by ``stack``."""
    logs = cfg.run_dir / LOGS
    with record.phase("provision"):
        display.phase("provision")
        db = await stack.enter_async_context(
            external_postgres(cfg.dsn)
            if cfg.dsn
            else embedded_postgres(logs / "postgres.log", max_connections=cfg.embedded_max_connections)
        )
        record.set(
            "database",
            {
                "dsn": db.display,
                "embedded": db.embedded,
                "version": db.version,
                "max_connections": db.max_connections,
                # a run killed with -9 leaves it behind: the next run removes it
                "data_dir": str(db.data_dir) if db.embedded and db.data_dir else None,
            },
        )
        record.started("postgres", db.pid)
        record.data["versions"]["postgresql"] = db.version
        # drainwatch's own connection, before any traffic: a leak that fills the server cannot lock it out
        watch = await stack.enter_async_context(Watch(db.dsn))
        reserved = await _reserved_slots(watch)
        if not cfg.target_url:  # a service drainwatch starts: its output is ours to read
            # entered before it, so it reads the last lines the service prints on its way out
            await stack.enter_async_context(watch_log(logs / "target.log", cfg.run_dir / SERVICE_WARNINGS_CSV))
        pooler = await _pooler(stack, cfg, db, record)
        target = await stack.enter_async_context(_target(cfg, pooler.dsn if pooler else db.dsn, logs))
        match, how, pid_file = _selection(cfg, target, logs, pooler)
        record.set(
            "target",
            {
                "url": target.url,
                "pid": target.pid,
                "kind": target.kind,
                "command": target.command,
                "match": vars(match),
                "selected_by": how,
                "pool_limit": target.pool_limit,
                "cycles_share_state": bool((cfg.isolate or cfg.sweep_disconnect) and target.restart is None),
            },
        )
        record.started("target", target.pid)
        display.pool_limit = target.pool_limit
        collector = await stack.enter_async_context(
            collector_process(
                db.dsn,
                match,
                cfg.run_dir / SAMPLES_CSV,
                interval=cfg.interval,
                log_path=logs / "collector.log",
                metrics_port=cfg.metrics_port,
            )
        )
        record.started("collector", collector.pid)
        await _first_sample(cfg.run_dir / SAMPLES_CSV, logs / "collector.log")
        display.message(
            f"PostgreSQL {db.version} at {db.display}; target {target.command or target.url}; "
            f"watching backends by {how}"
        )
    return RunContext(
        cfg=cfg,
        run_dir=cfg.run_dir,
        record=record,
        display=display,
        db=db,
        target=target,
        match=match,
        collector=collector,
        watch=watch,
        probe_request=_probe_request(cfg),
        reserved=reserved,
        docker=docker,
        pid_file=pid_file,
        pooler=pooler,
    )


async def _pooler(stack: AsyncExitStack, cfg: RunConfig, db: Database, record: RunRecord) -> Pooler | None:
    """PgBouncer between the service and PostgreSQL, sampled beside it, when asked for: one
    drainwatch starts (--via-pgbouncer), or the user's own, only read (--pgbouncer)."""
    if cfg.pgbouncer:
        pooler = await external_pgbouncer(cfg.pgbouncer, db.dsn)
    elif cfg.via_pgbouncer:
        logs = cfg.run_dir / LOGS
        size = max(10, (db.max_connections - 10) // 2)  # room left on the server for drainwatch and the rest
        pooler = await stack.enter_async_context(
            pgbouncer(db.dsn, logs / "pgbouncer.log", mode=cfg.via_pgbouncer, pool_size=size)
        )
        record.started("pgbouncer", pooler.pid)
    else:
        return None
    record.data["database"]["pgbouncer"] = {
        "mode": pooler.mode,
        "pool_size": pooler.pool_size,
        "dsn": redact_dsn(pooler.dsn),
        **({"external": True, "admin": redact_dsn(pooler.admin_dsn), "pid": pooler.pid} if pooler.external else {}),
    }
    await stack.enter_async_context(
        sample_pools(pooler.admin_dsn, cfg.run_dir / PGBOUNCER_CSV, interval=max(cfg.interval, 0.25))
    )
    return pooler


def _target(cfg: RunConfig, dsn: str, logs: Path) -> AbstractAsyncContextManager[Target]:
    if cfg.serve:
        return served_service(
            cfg.serve,
            dsn=dsn,
            log_path=logs / "target.log",
            setup=cfg.setup,
            env={**cfg.serve_env, **DEV_MODE} if cfg.dev_mode else cfg.serve_env,
            cwd=cfg.serve_cwd,
            database_variable=cfg.database_env,
            pool_limit=cfg.pool_limit,
            pool_view_path=cfg.pool_view,
            instrument=cfg.instrument,
        )
    if cfg.target_url:
        return external_target(cfg.target_url, cfg.pool_limit, cfg.pool_view)
    return demo_service(cfg.variant, dsn, logs / "target.log", env=DEV_MODE if cfg.dev_mode else None)


def _selection(
    cfg: RunConfig, target: Target, logs: Path, pooler: Pooler | None = None
) -> tuple[Match, str, Path | None]:
    """Which backends are the target's, how that was decided, and the pid file it reads.

    A service on this machine is found by its own sockets, whatever its application_name;
    behind PgBouncer, by the pooler's. The selector options still apply on top. Raises
    TargetProblem when neither works.
    """
    given = any(vars(cfg.match).values())
    options = ", ".join(f"{k}={v!r}" for k, v in vars(cfg.match).items() if v)
    if pooler is not None and pooler.pid is not None:
        logs.mkdir(parents=True, exist_ok=True)
        pid_file = logs / "pgbouncer.pid"
        pid_file.write_text(str(pooler.pid))
        how = f"the sockets of PgBouncer (process {pooler.pid}, {pooler.mode} mode)" + (
            f", and {options}" if given else ""
        )
        return replace(cfg.match, client_pid_file=str(pid_file)), how, pid_file
    if pooler is not None:  # the user's PgBouncer on another machine: its server connections are not ours to see
        if given:
            return cfg.match, options, None
        raise TargetProblem(
            f"PgBouncer at {pooler.address} is no process drainwatch can see on this machine, so the server "
            "connections it opens for your service cannot be told from the others",
            hint="select them: --usename USER or --datname DB (or --app-name, --client-addr)",
        )
    if target.kind == "demo":
        return (
            (cfg.match, options, None)
            if given
            else (Match(application_name=target.app_name), f"application_name LIKE {target.app_name!r}", None)
        )
    pid = target.pid_now() if target.kind == "served" else listening_pid(target.url)
    if pid is None:
        if given:
            return cfg.match, options, None
        raise TargetProblem(
            f"no process on this machine listens at {target.url}, so its backends cannot be told from the others",
            hint="select them: --app-name 'myapp%' (or --usename, --datname, --client-addr)",
        )
    logs.mkdir(parents=True, exist_ok=True)
    pid_file = logs / "target.pid"
    pid_file.write_text(str(pid))
    how = f"the sockets of process {pid} and its children" + (f", and {options}" if given else "")
    return replace(cfg.match, client_pid_file=str(pid_file)), how, pid_file


def _probe_request(cfg: RunConfig) -> Request:
    """The probe: --probe-path, else the demo's /health/db, else the first steady endpoint."""
    headers = dict(cfg.probe_headers)
    if cfg.probe_path:
        return Request("GET", cfg.probe_path, headers)
    if cfg.demo:
        return Request("GET", DEMO_PROBE, headers)
    if not cfg.traffic.steady:
        raise UsageError(
            "drainwatch does not know which request of your service needs the database",
            hint="give --probe-path PATH (or [probe] path)",
        )
    first = cfg.traffic.steady[0]
    return replace(first, headers={**first.headers, **headers})


async def _try_requests(run: RunContext) -> None:
    """Every request the load will send, once, and the probe must reach the database (not for the demo)."""
    if run.target.kind == "demo":
        return
    with run.record.phase("preflight"):
        run.display.phase("preflight")
        await read_pool_view(run.target)  # its first read starts the checkout records: preflight's own count
        requests = [] if run.cfg.locustfile else run.cfg.traffic.requests(run.cfg.mix)
        expected = {kind: run.cfg.traffic.expected(kind) for kind in ("timeout", "error")}
        seen = await try_requests(run.target.url, [*requests, ("probe", run.probe_request)], expected)
        reached = await probe_reaches_database(run.target.url, run.probe_request, run.watch, run.match)
        run.record.set("preflight", {"requests": seen, "probe": reached})


async def _shutdown(run: RunContext) -> dict[str, Any]:
    """SIGTERM the served service; it must exit by itself within its grace and leave no connection open."""
    from drainwatch.provision.target import SHUTDOWN_GRACE

    with run.record.phase("shutdown"):
        run.display.phase("shutdown")
        before = {row["pid"] for row in await snapshot(run.watch, run.match)}
        ports = _clients_at_pooler(run)
        assert run.target.stop is not None
        dead = _exited(run.target.pid_now())  # before SIGTERM: it did not shut down, it had died
        started = time.monotonic()
        code = await run.target.stop()
        exited = time.monotonic() - started
        await asyncio.sleep(0.5)  # the server notices closed sockets a moment later
        rows = await _left_open(run, before, ports)
    return {
        "exit_code": code,
        "exited_s": round(exited, 2),
        "grace_s": SHUTDOWN_GRACE,
        "killed": exited > SHUTDOWN_GRACE,
        "already_exited": dead,
        "before": len(before),
        "remaining": [{k: row[k] for k in ("pid", "state", "query")} for row in rows],
    }


def _deaths(run: RunContext) -> list[str]:
    """A sentence for each process of the run that ended by itself: PostgreSQL, the service."""
    said = []
    for what, code, pid, log in (
        ("PostgreSQL", run.db.exit_code, run.db.pid, "postgres.log"),
        ("the service", run.target.exit_code, run.target.pid_now(), "target.log"),
    ):
        status = code() if code else None
        if status is None:
            continue
        how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        words = last_words(run.run_dir / LOGS / log, 3)
        said.append(f"{what} (pid {pid}) died during the run, {how}; the last lines of logs/{log}: {words}")
    return said


def _exited(pid: int | None) -> bool:
    """True when the service's process is gone (or a zombie nobody reaped yet)."""
    import psutil

    try:
        return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _clients_at_pooler(run: RunContext) -> set[int]:
    """The local ports of the service's connections to the user's PgBouncer (--pgbouncer), before it stops."""
    from drainwatch.sample.selector import client_ports

    if run.pooler is None or not run.pooler.external:
        return set()
    return set(client_ports(run.target.pid_now(), int(run.pooler.address.rsplit(":", 1)[1])))


async def _left_open(run: RunContext, before: set[int], ports: set[int] | None = None) -> list[dict[str, Any]]:
    """The service's connections still open after it stopped. Behind PgBouncer the server
    connections stay with the pooler by design: what counts is its clients still connected
    (at the user's own pooler, which others may share, only those from the service's ``ports``)."""
    if run.pooler is not None and run.pooler.external:
        rows = [row for row in await show_clients(run.pooler.admin_dsn) if row.get("port") in (ports or set())]
        return [
            {"pid": None, "state": f"client still connected to PgBouncer ({row.get('state')})", "query": ""}
            for row in rows
        ]
    if run.pooler is not None:
        pools = await show_pools(run.pooler.admin_dsn)
        clients = pools["cl_active"] + pools["cl_waiting"]
        return [{"pid": None, "state": "client still connected to PgBouncer", "query": ""}] * clients
    match = replace(run.match, client_pid_file=None) if run.match.client_pid_file else run.match
    return [row for row in await snapshot(run.watch, match) if row["pid"] in before]


async def _reserved_slots(watch: Watch) -> int:
    rows = await watch.rows(
        "SELECT current_setting('superuser_reserved_connections')::int"
        " + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved"
    )
    return int(rows[0]["reserved"])


async def _first_sample(samples: Path, log_path: Path, timeout: float = 15) -> None:
    from drainwatch.errors import DatabaseProblem

    deadline = time.monotonic() + timeout
    while read_last_sample(samples) is None:
        if time.monotonic() > deadline:
            raise DatabaseProblem(
                f"the collector wrote no sample: {last_words(log_path)}", hint="read logs/collector.log"
            )
        await asyncio.sleep(0.1)


def _forecast(run_dir: Path, record: RunRecord, cfg: RunConfig) -> dict[str, Any] | None:
    """The outage forecast, when production figures were given."""
    pool = cfg.prod_pool or record.data["target"].get("pool_limit")
    rps = cfg.prod_rps or cfg.rate  # a soak at a stated rate forecasts at that rate
    if not rps or not (pool or cfg.prod_max_connections):
        return None
    prod = Production(rps, dict(cfg.prod_shares), pool, instances=cfg.prod_instances, server=cfg.prod_max_connections)
    return from_run_dir(run_dir, prod).to_dict()


def _write_outputs(run_dir: Path, record: RunRecord, verdict: Verdict | None, cfg: RunConfig) -> None:
    """summary.json, summary.md, junit.xml and report.html from what exists; never raises."""
    from drainwatch.report.outputs import write_summary_md

    data: dict[str, Any] | None = None
    try:
        extra = {
            "pool_limit": record.data["target"].get("pool_limit"),
            "max_connections": record.data["database"].get("max_connections"),
        }
        data = write_summary(run_dir, record.data, verdict, extra)
        if verdict is not None and cfg.prod_rps:
            extra["forecast"] = _forecast(run_dir, record, cfg)
            data = write_summary(run_dir, record.data, verdict, extra)
        write_junit(run_dir, record.data, verdict)
    except Exception:  # a broken summary must not hide the verdict
        log.exception("could not write summary.json/junit.xml")
    try:  # from what summary.json was written from (without it: from the run folder)
        write_summary_md(run_dir, data)
    except Exception:
        log.exception("could not write summary.md")
    try:
        from drainwatch.report import render_report

        render_report(run_dir)
    except Exception:
        log.exception("could not render report.html")
