"""Faults injected during the load phase, as a chaos kind of their own (``--fault KIND@TIME``).

    pg-restart@30s              restart the embedded PostgreSQL (fast shutdown, then start)
    terminate-backends@30s      pg_terminate_backend() on every backend of the target
    pause-target@30s+5s         SIGSTOP the target for 5 s, then SIGCONT (a demo drainwatch started)
    pooler-kill@30s             (--via-pgbouncer) KILL the database at PgBouncer: every client and server
                                connection dropped at once, then RESUME
    pg-pause@30s+5s             (--via-pgbouncer transaction) PAUSE the database at PgBouncer, RESUME it 5 s
                                later: the database stalls, new queries wait at the pooler, pool and
                                statement timeouts fire

Times count from the start of the load phase. A fault that fails is recorded in run.json
with its error, like the system under test failing: data, not a crash.

Against the compose stack (``compose/``) the same faults go through the Docker SDK:
``--docker-postgres CONTAINER`` restarts that container for ``pg-restart``,
``--docker-target CONTAINER`` pauses and unpauses it for ``pause-target``. This machine has
no Docker engine: that path is tested up to the engine (a stand-in client at the
``DockerControl`` seam, and the real SDK's refusal), not against real containers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from drainwatch.errors import UsageError
from drainwatch.plan import Fault, Match

log = logging.getLogger(__name__)


class DockerControl:
    """Faults on compose containers through the Docker SDK. ``client`` is a ``docker.DockerClient``
    (or anything with ``containers.get(name)`` returning objects with ``restart/pause/unpause``)."""

    def __init__(self, client: Any, postgres: str | None, target: str | None) -> None:
        self.client, self.postgres, self.target = client, postgres, target

    @classmethod
    def connect(cls, postgres: str | None, target: str | None) -> DockerControl:
        """Reach the engine and both containers now, so a bad name fails before the run starts.

        Raises UsageError naming the fix.
        """
        try:
            import docker
        except ImportError as exc:
            raise UsageError("the docker package is missing", hint="pip install 'drainwatch[compose]'") from exc
        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            raise UsageError(
                f"cannot reach the Docker engine ({str(exc).splitlines()[0][:120]})",
                hint="start Docker, or leave out --docker-postgres/--docker-target",
            ) from exc
        control = cls(client, postgres, target)
        for name in filter(None, (postgres, target)):
            try:
                client.containers.get(name)
            except docker.errors.NotFound as exc:
                raise UsageError(
                    f"no Docker container named {name!r}", hint="see `docker compose ps` for the names"
                ) from exc
        return control

    async def restart_postgres(self) -> str:
        container = self.client.containers.get(self.postgres)
        await asyncio.to_thread(container.restart, timeout=10)
        return f"container {self.postgres} restarted"

    async def pause_target(self, seconds: float) -> str:
        container = self.client.containers.get(self.target)
        await asyncio.to_thread(container.pause)
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.shield(asyncio.to_thread(container.unpause))  # never leave it paused
        return f"container {self.target} paused {seconds:g}s"


async def inject(
    faults: tuple[Fault, ...],
    *,
    load_start: float,
    db: Any,
    target: Any,
    match: Match,
    on_event: Callable[[dict[str, Any]], None],
    docker: DockerControl | None = None,
    pooler: Any = None,
) -> None:
    """Inject each fault at its time; report each as an event (kind, at, start, end, detail)."""
    for fault in sorted(faults, key=lambda f: f.at):
        await asyncio.sleep(max(0.0, load_start + fault.at - time.time()))
        event: dict[str, Any] = {"fault": str(fault), "kind": fault.kind, "start": time.time()}
        try:
            if fault.kind == "pooler-kill":
                event["detail"] = await _kill_at_pooler(pooler)
            elif fault.kind == "pg-pause":
                event.update(await _pause_at_pooler(pooler, fault.length))
            else:
                event["detail"] = await _perform(fault, db, target, match, on_event, docker)
        except Exception as exc:  # a fault that cannot be delivered is data, not a crash
            log.warning("fault %s failed: %s", fault, exc)
            event["error"] = f"{type(exc).__name__}: {exc}"
        event["end"] = time.time()
        on_event(event)


async def _perform(
    fault: Fault,
    db: Any,
    target: Any,
    match: Match,
    on_event: Callable[[dict[str, Any]], None],
    docker: DockerControl | None = None,
) -> str:
    if fault.kind == "pg-restart" and docker is not None and docker.postgres:
        return await docker.restart_postgres()
    if fault.kind == "pause-target" and docker is not None and docker.target:
        return await docker.pause_target(fault.length)
    if fault.kind == "pg-restart":
        pid = await db.restart()
        on_event({"postgres_pid": pid})
        return "PostgreSQL restarted"
    if fault.kind == "terminate-backends":
        from drainwatch.provision.postgres import connect
        from drainwatch.sample.selector import resolve

        where, params = resolve(match, db.dsn)
        async with await connect(db.dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND {where}",
                params,
            )
            row = await cur.fetchone()
        return f"terminated {row[0] if row else 0} backend(s)"
    pid = target.pid_now()
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(fault.length)
    finally:
        os.kill(pid, signal.SIGCONT)  # even when interrupted: never leave it stopped
    return f"target paused {fault.length:g}s"


async def _kill_at_pooler(pooler: Any) -> str:
    """KILL the service's database on PgBouncer's admin console (every client and server connection
    dropped at once), then RESUME it so new connections are served again."""
    from drainwatch.provision.pgbouncer import admin_command

    await admin_command(pooler.admin_dsn, f"KILL {pooler.database}")
    await admin_command(pooler.admin_dsn, f"RESUME {pooler.database}")
    return f"PgBouncer dropped every connection to {pooler.database}"


async def _pause_at_pooler(pooler: Any, seconds: float) -> dict[str, Any]:
    """PAUSE the service's database on PgBouncer's admin console for ``seconds``, then RESUME it
    (also when PAUSE is not answered in time, or the run is interrupted)."""
    from drainwatch.provision.pgbouncer import pause_for

    took = await pause_for(pooler.admin_dsn, pooler.database, seconds)
    if took is None:
        detail = (
            f"PgBouncer held new queries to {pooler.database} for {seconds:g}s, and its PAUSE was not answered "
            "in that time (a server connection stayed linked to a client: a transaction still open), then RESUME"
        )
    else:
        detail = (
            f"PgBouncer paused {pooler.database} for {seconds:g}s (PAUSE answered after {took:.2f}s, once the "
            "transactions in flight had ended), then resumed it"
        )
    return {"detail": detail, "pause_answered_s": None if took is None else round(took, 3)}
