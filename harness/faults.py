"""Faults injected during the load phase, as a chaos kind of their own (``--fault KIND@TIME``).

    pg-restart@30s              restart the embedded PostgreSQL (fast shutdown, then start)
    terminate-backends@30s      pg_terminate_backend() on every backend of the target
    pause-target@30s+5s         SIGSTOP the target for 5 s, then SIGCONT (a demo drainwatch started)

Times count from the start of the load phase. A fault that fails is recorded in run.json
with its error, like the system under test failing: data, not a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.config import Match, parse_duration
from harness.errors import UsageError

log = logging.getLogger(__name__)

KINDS = ("pg-restart", "terminate-backends", "pause-target")
_SPEC = re.compile(r"^(?P<kind>[a-z-]+)@(?P<at>[^+]+)(?:\+(?P<length>.+))?$")


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float  # seconds after the load phase starts
    length: float = 0.0  # pause-target only

    def __str__(self) -> str:
        return f"{self.kind}@{self.at:g}s" + (f"+{self.length:g}s" if self.length else "")


def parse_fault(text: str) -> Fault:
    """``pause-target@10s+3s`` → Fault; UsageError naming the form otherwise."""
    found = _SPEC.match(text.strip())
    if not found or found["kind"] not in KINDS:
        raise UsageError(f"--fault {text!r} is not a fault", hint=f"write KIND@TIME, KIND one of {', '.join(KINDS)}, like pg-restart@20s")
    at = parse_duration(found["at"], name=f"--fault {text!r} time")
    length = parse_duration(found["length"], name=f"--fault {text!r} length") if found["length"] else 0.0
    if found["kind"] == "pause-target" and not length:
        length = 5.0
    return Fault(found["kind"], at, length)


def check_faults(faults: tuple[Fault, ...], *, duration: float, embedded: bool, own_target: bool) -> None:
    """Raise UsageError for a fault this run cannot inject."""
    for fault in faults:
        if fault.at >= duration:
            raise UsageError(f"--fault {fault} comes after the load ends ({duration:g}s)", hint="give a time inside --duration")
        if fault.kind == "pg-restart" and not embedded:
            raise UsageError("--fault pg-restart needs the embedded PostgreSQL", hint="leave out --dsn, or use terminate-backends")
        if fault.kind == "pause-target" and not own_target:
            raise UsageError("--fault pause-target needs the demo service drainwatch starts", hint="leave out --target-url")


async def inject(
    faults: tuple[Fault, ...], *, load_start: float, db: Any, target: Any, match: Match,
    on_event: Callable[[dict[str, Any]], None],
) -> None:  # fmt: skip
    """Inject each fault at its time; report each as an event (kind, at, start, end, detail)."""
    for fault in sorted(faults, key=lambda f: f.at):
        await asyncio.sleep(max(0.0, load_start + fault.at - time.time()))
        event: dict[str, Any] = {"fault": str(fault), "kind": fault.kind, "start": time.time()}
        try:
            event["detail"] = await _perform(fault, db, target, match, on_event)
        except Exception as exc:  # a fault that cannot be delivered is data, not a crash
            log.warning("fault %s failed: %s", fault, exc)
            event["error"] = f"{type(exc).__name__}: {exc}"
        event["end"] = time.time()
        on_event(event)


async def _perform(fault: Fault, db: Any, target: Any, match: Match, on_event: Callable[[dict[str, Any]], None]) -> str:
    if fault.kind == "pg-restart":
        pid = await db.restart()
        on_event({"postgres_pid": pid})
        return "PostgreSQL restarted"
    if fault.kind == "terminate-backends":
        from harness.collector import match_clause
        from harness.postgres import connect

        where, params = match_clause(match)
        async with await connect(db.dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND {where}", params,
            )  # fmt: skip
            row = await cur.fetchone()
        return f"terminated {row[0] if row else 0} backend(s)"
    os.kill(target.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(fault.length)
    finally:
        os.kill(target.pid, signal.SIGCONT)  # even when interrupted: never leave it stopped
    return f"target paused {fault.length:g}s"
