"""The verdict: PASS, LEAK or ERROR, with the numbers and the evidence that decided it.

A pure function of what the run collected (samples, the lingering snapshot, the probe,
the app's own pool view when it exposes one), so tests call it without a database.
The checks, in the order they are reported:

    drain                connections back within tolerance of baseline after settle; an
                         excess of idle connections the pool itself holds (reset by the
                         driver, or counted idle by the pool's own view) is a warm pool
    idle_in_transaction  nothing left idle in a transaction
    held_connections     no idle connection still holding application work
    pool_view            the app's pools count nothing checked out (only when exposed)
    single_use           no connection opened for one request, then left open while the
                         load went on without it (a connection per request or thread
                         that nothing closes; the baseline may already hold them)
    probe                the service still serves after settle
    pooler               (--via-pgbouncer) no client waiting at PgBouncer after settle; in
                         transaction mode, no server connection still linked to a client

Counting alone is fooled: a pool warmed to its maximum hides a leak in the counts, and a
connection closed by the garbage collector or the server vanishes from
``pg_stat_activity`` while its pool still counts it. The last two checks see those.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from drainwatch.errors import EXIT_LEAK, EXIT_PASS, EXIT_SATURATED, EXIT_USAGE
from drainwatch.judge.attribution import summary as attribution_summary
from drainwatch.judge.forensics import ACTIVE, HELD, IN_TRANSACTION, POOLED, UNSURE
from drainwatch.judge.load import OTHER, broken_kinds
from drainwatch.judge.probe import ProbeResult
from drainwatch.sample.service_log import describe
from drainwatch.units import human_hold, human_seconds

PASS, LEAK, SATURATED, ERROR = "PASS", "LEAK", "SATURATED", "ERROR"
STATE_KEYS = ("total", "active", "idle", "idle_in_transaction", "idle_in_transaction_aborted")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # PASS, LEAK, SATURATED or ERROR ("verdict" in summary.json)
    reasons: list[str]
    evidence: list[str]  # the checks (or facts) that decided the verdict
    checks: list[Check]
    baseline: dict[str, float]
    peak: dict[str, float]
    final: dict[str, float]
    leaked: int
    leaked_by_kind: dict[str, int]
    pooled_idle: int
    recovery_s: float | None
    idle_in_transaction: dict[str, Any]
    zombie: dict[str, Any]
    gaps: dict[str, Any]
    probe: dict[str, Any]
    pool_view: dict[str, Any] | None
    scenarios: dict[str, int]
    routes: dict[str, int]
    tolerance: int
    server: dict[str, Any] | None = None  # the server's limit: peak, usable slots, refusals
    baseline_drift: dict[str, Any] | None = None  # low/high of the quiet window, the count before warm-up
    service_warnings: dict[str, int] = field(default_factory=dict)  # kind → lines the service logged
    pooler: dict[str, Any] | None = None  # PgBouncer's mode and SHOW POOLS at baseline and after settle
    # where the app checked out the connections its pools still count out (drainwatch.instrument)
    checkout_sites: dict[str, int] = field(default_factory=dict)
    # where the app took the connections it dropped unclosed, which SQLAlchemy's garbage-collector cleanup took back
    collected_sites: dict[str, int] = field(default_factory=dict)
    # the service's tasks and threads still in application code after settle, and where they wait
    waiting: list[dict[str, Any]] = field(default_factory=list)
    hangups: dict[str, dict[str, Any]] = field(default_factory=dict)  # per disconnect request: did it reach the server
    load_kinds: dict[str, Any] | None = None  # per kind: requests and those that tested nothing
    leaked_exact: bool = True  # False: only the probe or the pool view saw the leak, the count is a floor
    attribution: dict[str, Any] | None = None  # leaked connections by statement and by the request in flight
    oldest_held_s: float = 0.0
    per_request: bool = False  # held connections opened one by one during the run (a connection per request/thread)
    # connections opened during the load, for how many requests, how many never reused, closed again
    reuse: dict[str, int] | None = None
    never_reused: list[int] = field(default_factory=list)  # backend pids of the connections that served one request
    faults: list[dict[str, Any]] = field(default_factory=list)  # what drainwatch injected: fault, detail or error
    # per route: how long its requests held a connection during the load, and how many it kept busy on average
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {PASS: EXIT_PASS, LEAK: EXIT_LEAK, SATURATED: EXIT_SATURATED}.get(self.outcome, EXIT_USAGE)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"verdict": data.pop("outcome"), **data}


def _window(samples: Sequence[Mapping[str, Any]], start: float, end: float) -> list[Mapping[str, Any]]:
    return [s for s in samples if start <= float(s["t"]) <= end and not int(s.get("gap", 0))]


def _levels(samples: Sequence[Mapping[str, Any]], how: str) -> dict[str, float]:
    if not samples:
        return {key: 0 for key in STATE_KEYS}
    pick = statistics.median if how == "median" else max
    return {key: float(pick(float(s[key]) for s in samples)) for key in STATE_KEYS}


def _zombie(tail: Sequence[Mapping[str, Any]], load_end: float) -> dict[str, Any]:
    """Backends still working after traffic stopped: work done for clients that have gone."""
    busy = [s for s in tail if float(s["active"]) > 0]
    if not busy:
        return {"peak_active": 0, "lasted_s": 0.0}
    return {
        "peak_active": int(max(float(s["active"]) for s in busy)),
        "lasted_s": round(float(busy[-1]["t"]) - load_end, 2),
    }


def _gaps(samples: Sequence[Mapping[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Samples the collector missed because PostgreSQL was unreachable, and how long that lasted."""
    missed = [float(s["t"]) for s in samples if int(s.get("gap", 0)) and start <= float(s["t"]) <= end]
    if not missed:
        return {"count": 0, "seconds": 0.0}
    times = sorted(float(s["t"]) for s in samples if start <= float(s["t"]) <= end)
    after = [t for t in times if t > missed[-1]]
    span = (after[0] if after else missed[-1]) - missed[0]
    return {"count": len(missed), "seconds": round(span, 2), "first": missed[0]}


@dataclass(frozen=True)
class _Tally:
    """The lingering connections counted by kind, and what the pool itself says it holds idle."""

    kinds: Counter[str]
    leaked_rows: list[Mapping[str, Any]]
    iit_rows: list[Mapping[str, Any]]
    oldest_iit: float
    pool_idle: int
    single_use: list[Mapping[str, Any]]

    @property
    def held(self) -> int:
        return self.kinds.get(HELD, 0)

    @property
    def pooled(self) -> int:
        return self.kinds.get(POOLED, 0) - sum(1 for row in self.single_use if row["kind"] == POOLED)

    @property
    def unsure(self) -> int:
        return self.kinds.get(UNSURE, 0)

    def invisible(self, pool_view: Mapping[str, Any] | None) -> int:
        """Connections the pool counts checked out that PostgreSQL no longer shows."""
        if pool_view is None:
            return 0
        return max(0, int(pool_view["checked_out"]) - len(self.leaked_rows) - self.kinds.get(ACTIVE, 0))


# A connection that went idle within this long of being opened ran one request and no more.
SINGLE_USE_LIFE = 1.0
# So many of them, the load going on without them, is a pattern; fewer may be a pool's last few.
SINGLE_USE_PATTERN = 5
# A pool opens a connection for each request it serves at once and keeps it: a load of N users
# never needs more than this many per user (one request in flight each, two pools at most).
CONNECTIONS_PER_USER = 2
# Connections opened for this share of the load's requests or more: one per request, not a pool.
PER_REQUEST_SHARE = 0.2


@dataclass(frozen=True)
class Reuse:
    """Did the service reuse its connections? A pool opens a few and serves request after request
    on them; a connection per request (or thread) opens one each time and leaves it to the
    garbage collector. Counted from the collector's readings during the load."""

    opened: int  # backends opened during the load and seen open (a connection shorter than a reading is missed)
    requests: int  # the load's requests
    closed: int  # opened or there at the load's start, and gone again by its end
    users: int  # the load's users: at most that many requests at once

    @property
    def per_request(self) -> bool:
        bound = max(SINGLE_USE_PATTERN, CONNECTIONS_PER_USER * self.users)
        return self.opened > bound and self.opened >= PER_REQUEST_SHARE * self.requests

    def sentence(self, never_reused: int) -> str:
        said = f"{self.opened} connection(s) opened for {self.requests} request(s) during the load"
        if never_reused:
            said += f"; {never_reused} still open served one request and were never reused"
        if self.closed:
            said += f"; {self.closed} closed again before the load ended"
        return said


def _reuse(samples: Sequence[Mapping[str, Any]], start: float, end: float, requests: int, users: int) -> Reuse:
    window = _window(samples, start, end)
    readings = [s for s in window if not s.get("folded")]  # read_samples folds a long load into one row
    if not readings:
        return Reuse(0, requests, 0, users)
    # the first reading counts what was opened before the load
    opened = sum(int(float(s.get("opened") or 0)) for s in [*readings[1:], *(s for s in window if s.get("folded"))])
    closed = max(0, int(float(readings[0]["total"])) + opened - int(float(readings[-1]["total"])))
    return Reuse(opened, requests, closed, users)


def _life(row: Mapping[str, Any]) -> float:
    """Seconds from a connection's opening to its last change of state: under one request's length,
    it served that request and was never used again."""
    return float(row.get("backend_age_s") or 0) - float(row.get("state_age_s") or 0)


def _reuse_reasons(
    tally: _Tally, reuse: Reuse, drift: Mapping[str, Any], baseline_total: float, tolerance: int
) -> list[str]:
    """What the connections opened during the load say, when they were not a pool's."""
    said = [reuse.sentence(len(tally.single_use))] if tally.single_use or reuse.per_request else []
    if tally.single_use and (before := drift["before_warmup"]) is not None and baseline_total > before + tolerance:
        said.append(
            f"the warm-up alone took the count from {before:.0f} before any traffic to {baseline_total:.0f}: "
            "the baseline already holds connections of the same kind"
        )
    return said


def _single_use(
    lingering: Sequence[Mapping[str, Any]], traffic_start: float, load: tuple[float, float], reuse: Reuse
) -> list[Mapping[str, Any]]:
    """Idle connections opened once traffic began that served one request and were never used again,
    whatever their last statement (Django ends each request's transaction with COMMIT; no pool
    exists to reset it), when that is a pattern no pool makes: at least SINGLE_USE_PATTERN left
    behind while the load went on for SINGLE_USE_LIFE more, and either more of them than the load
    could ever need at once (a pool that grew in a burst keeps at most that many, LIFO or not), or
    connections opened per request during the load. Those left from warm-up count too: the same leak
    fills the baseline."""
    load_start, load_end = load
    unreused = [
        row
        for row in lingering
        if row["kind"] in (POOLED, UNSURE)
        and row.get("state_change_t") not in (None, "")
        and _life(row) < SINGLE_USE_LIFE
        and float(row["state_change_t"]) - _life(row) >= traffic_start
    ]
    proven = [row for row in unreused if float(row["state_change_t"]) < load_end - SINGLE_USE_LIFE]
    if len(proven) < SINGLE_USE_PATTERN:
        return []
    # opened one by one while the load ran, its pools warm already: what a pool does only at a new high
    one_by_one = {
        round(float(r["state_change_t"]) - _life(r), 1) for r in proven if float(r["state_change_t"]) >= load_start
    }
    spread = len(one_by_one) >= SINGLE_USE_PATTERN and max(one_by_one) - min(one_by_one) >= SINGLE_USE_LIFE
    if spread or (reuse.users and len(unreused) > CONNECTIONS_PER_USER * reuse.users) or reuse.per_request:
        return unreused
    return []


def _tally(
    lingering: Sequence[Mapping[str, Any]],
    pool_view: Mapping[str, Any] | None,
    traffic_start: float,
    load: tuple[float, float],
    reuse: Reuse,
) -> _Tally:
    kinds = Counter(row["kind"] for row in lingering)
    iit_rows = [row for row in lingering if row["kind"] == IN_TRANSACTION]
    single_use = _single_use(lingering, traffic_start, load, reuse)
    never_pooled = sum(1 for row in single_use if row["kind"] == POOLED)
    return _Tally(
        kinds=kinds,
        single_use=single_use,
        leaked_rows=[row for row in lingering if row["kind"] in (HELD, IN_TRANSACTION)] + single_use,
        iit_rows=iit_rows,
        oldest_iit=max((float(row.get("state_age_s") or 0) for row in iit_rows), default=0.0),
        # Idle connections the pool itself holds explain an excess over baseline (a warm pool):
        # the pool's own idle count when it tells us, otherwise those the driver reset.
        # (a connection never reused is in no pool, whatever its last statement)
        pool_idle=int(pool_view["idle"]) if pool_view else kinds.get(POOLED, 0) - never_pooled,
    )


def _check_drain(
    baseline: dict[str, float],
    final: dict[str, float],
    tally: _Tally,
    tolerance: int,
    recovery_s: float | None,
    pool_view_given: bool,
    before_traffic: float | None = None,
) -> Check:
    """Back within tolerance of the baseline, or over it only by idle connections a pool holds; and,
    when connections were left that no pool reuses, back to the count before any traffic too: a
    warm-up that leaked fills the baseline with the same leak."""
    excess = final["total"] - baseline["total"]
    not_in_pool = max(0.0, final["total"] - tally.pool_idle)  # connections the pool does not hold idle
    drained = excess <= tolerance or not_in_pool <= tolerance
    over_start = final["total"] - before_traffic if before_traffic is not None else 0.0
    filled = drained and bool(tally.single_use) and over_start > tolerance  # the baseline held the leak
    if filled:
        detail = (
            f"{final['total']:.0f} connections after settle, {over_start:.0f} over the {before_traffic:.0f} before any "
            f"traffic ({len(tally.single_use)} of them served one request and were never reused); the baseline "
            f"({baseline['total']:.0f}) was counted after a warm-up that had already left connections open"
        )
        drained = False
    elif excess <= tolerance:
        detail = f"{final['total']:.0f} connections after settle, baseline {baseline['total']:.0f}"
    elif drained:
        detail = (
            f"{final['total']:.0f} connections after settle, {excess:.0f} over baseline, all of them idle "
            f"in the pool ({'as the pool itself counts' if pool_view_given else 'reset by the driver'}): a warm pool, not a leak"
        )
    else:
        detail = (
            f"{final['total']:.0f} connections after settle, {excess:.0f} over baseline {baseline['total']:.0f} "
            f"(tolerance {tolerance}) and not idle in their pool"
            + (
                f"; {tally.unsure} idle ones ran application SQL last in a pool that does not reset, so they may be leaked"
                if tally.unsure
                else ""
            )
        )
    counted = int(min(max(0.0, excess, over_start if filled else 0.0), not_in_pool)) if not drained else 0
    return Check(
        "drain",
        drained,
        detail,
        {
            "baseline": baseline["total"],
            "before_traffic": before_traffic,
            "final": final["total"],
            "excess": excess,
            "recovery_s": recovery_s,
            "counted_excess": counted,
        },
    )


def _check_idle_in_transaction(tally: _Tally, tolerance: int) -> Check:
    count = len(tally.iit_rows)
    detail = (
        f"{count} connection(s) idle in transaction after settle, oldest {human_seconds(tally.oldest_iit)}"
        if count
        else "no connection idle in transaction after settle"
    )
    return Check(
        "idle_in_transaction", count <= tolerance, detail, {"count": count, "oldest_s": round(tally.oldest_iit, 2)}
    )


def _check_held(tally: _Tally, tolerance: int) -> Check:
    held = tally.held
    detail = (
        f"{held} idle connection(s) still hold application work (their last statement is the app's SQL, "
        "not the pool's reset)"
        if held
        else "no idle connection holds application work"
    )
    return Check(
        "held_connections", held <= tolerance, detail, {"held": held, "pooled": tally.pooled, "unsure": tally.unsure}
    )


def _check_single_use(tally: _Tally, tolerance: int, reuse: Reuse) -> Check:
    """Connections opened for one request and left open; or, when the garbage collector closed them
    all before settle ended, connections opened per request that outlived it (a healthy service
    opens none during the load: a pool keeps its own, a connection closed with its request lives
    less than a reading) and were closed again later."""
    count = len(tally.single_use)
    churn = reuse.per_request and reuse.closed >= SINGLE_USE_PATTERN
    if count:
        detail = (
            f"{count} connection(s) were opened for one request and left open while the load went on without "
            "them: no pool reuses them and nothing closes them (a connection per request or thread)"
        )
    elif churn:
        detail = (
            f"{reuse.opened} connection(s) were opened for {reuse.requests} request(s) during the load and outlived "
            f"their request, {reuse.closed} closed again later (the garbage collector, or the server): a connection "
            "per request or thread, left open, not a pool"
        )
    else:
        detail = "no connection was opened for one request and left open"
    return Check("single_use", count <= tolerance and not churn, detail, {"count": count, "churn": churn})


def _check_pool_view(pool_view: Mapping[str, Any], tally: _Tally, tolerance: int) -> Check:
    out = int(pool_view["checked_out"])
    seen = len(tally.leaked_rows) + tally.kinds.get(ACTIVE, 0)
    if out <= tolerance:
        detail = "the app's pools count nothing checked out"
    elif seen < out:
        detail = (
            f"the app's pools count {out} checked out, PostgreSQL shows {seen} of them: the other "
            f"{out - seen} were closed behind the pool's back (garbage collector or server), and the pool still counts them"
        )
    else:
        detail = f"the app's pools count {out} connection(s) checked out after settle"
    numbers = {
        "checked_out": out,
        "visible": seen,
        "active": tally.kinds.get(ACTIVE, 0),
        "limit": pool_view.get("limit"),
    }
    return Check("pool_view", out <= tolerance, detail, numbers)


def _check_probe(probe: ProbeResult) -> Check:
    return Check(
        "probe",
        probe.passed,
        f"{probe.ok}/{probe.attempts} probe requests served" + (f": {probe.detail}" if probe.detail else ""),
        {"attempts": probe.attempts, "ok": probe.ok, "target_alive": probe.target_alive},
    )


# Steady requests the service failed (no answer, 5xx, a connection refused or reset; not a 4xx it
# meant) past this share, and at least SATURATION_MIN of them: it stopped serving under the load.
SATURATION_SHARE = 0.01
SATURATION_MIN = 3


def _check_saturation(
    load_kinds: Mapping[str, Any] | None,
    zombie: Mapping[str, Any],
    pool_view: Mapping[str, Any] | None,
    holds: Mapping[str, Mapping[str, Any]],
) -> Check | None:
    """Did the service serve its steady traffic while the load ran? Judged over the load, whatever came
    back after it: a pool held too long by each request (or by work for clients that left) runs dry
    and the service stops serving, with every connection given back once the traffic stops."""
    kinds = load_kinds or {}
    # the steady kind; else the requests a locustfile of the user's sends under names of its own
    meant = "steady requests" if (kinds.get("steady") or {}).get("requests") else "requests of the locustfile's own"
    steady = kinds.get("steady") if meant == "steady requests" else kinds.get(OTHER)
    if not steady or not steady.get("requests"):
        return None
    requests = int(steady["requests"])
    failed = max(0, int(steady.get("failed") or 0) - int(steady.get("not_served") or 0))
    share = failed / requests
    numbers = {"requests": requests, "failed": failed, "share": round(share, 4), "threshold": SATURATION_SHARE}
    in_faults = int(steady.get("failed_in_faults") or 0)
    if in_faults:
        numbers["failed_in_faults"] = in_faults
    if share <= SATURATION_SHARE or failed < SATURATION_MIN:
        during = f" ({in_faults} more failed during the faults drainwatch injected, not counted)" if in_faults else ""
        return Check("saturation", True, f"{requests - failed} of {requests} {meant} served{during}", numbers)
    said = [
        f"the service stopped serving under the load: {failed} of {requests} {meant} ({share:.0%}) "
        f"failed while it ran (top error: {steady.get('top_error') or 'none recorded'})"
    ]
    waits = [
        f"{int(pool.get('waited') or 0)} request(s) waited for a connection of {name} (limit {pool.get('limit')})"
        for name, pool in ((pool_view or {}).get("pools") or {}).items()
        if isinstance(pool, Mapping) and pool.get("waited")
    ]
    if waits:
        said.append("; ".join(waits))
    limit = (pool_view or {}).get("limit")
    if holds_busy(holds, limit) and (held := holds_sentence(holds, limit)):
        said.append(held)
    if zombie.get("peak_active"):
        said.append(
            f"work for clients that had hung up kept {zombie['peak_active']} backend(s) busy up to "
            f"{human_seconds(zombie['lasted_s'])} after the traffic stopped: abandoned work held the pool"
        )
    return Check("saturation", False, "; ".join(said), numbers)


def _check_baseline(rows: Sequence[Mapping[str, Any]], quiet_s: float, tolerance: int) -> Check:
    """No connection already left in a transaction at baseline: with no traffic for the whole
    window, one frozen there is a leak that began during warm-up (or preflight), hidden in the
    baseline every later count is compared with."""
    stuck = [r for r in rows if r["kind"] == IN_TRANSACTION and float(r.get("state_age_s") or 0) >= 0.8 * quiet_s]
    if not stuck:
        return Check("baseline_clean", True, "no connection was left in a transaction at baseline", {"stuck": 0})
    detail = (
        f"the leak began during warm-up: {len(stuck)} connection(s) were already idle in transaction at "
        "baseline, frozen through the quiet window, so the baseline itself holds leaked connections"
    )
    return Check("baseline_clean", len(stuck) <= tolerance, detail, {"stuck": len(stuck)})


def _check_server(server: Mapping[str, Any]) -> Check:
    refused = server.get("refusals")
    if server["full"]:
        detail = (
            f"the server ran out of connections: peak {server['peak']} of {server['usable']} usable "
            f"(max_connections {server['max_connections']}, {server['reserved']} reserved)"
            + (f", {refused} connection(s) refused" if refused else "")
        )
    else:
        detail = f"peak {server['peak']} of {server['usable']} usable server connections" + (
            ", none refused" if refused == 0 else ""
        )
    return Check("server_limit", not server["full"], detail, dict(server))


def _check_pooler(pooler: Mapping[str, Any], tolerance: int) -> Check:
    """PgBouncer after settle: no client still waiting for a server connection; in transaction mode,
    no server connection still linked to a client (a transaction nobody ended holds it)."""
    final = pooler["final"]
    waiting, linked = int(final["cl_waiting"]), int(final["sv_active"])
    problems = []
    if waiting > tolerance:
        problems.append(
            f"{waiting} client(s) still waiting at PgBouncer after traffic stopped, with {final['sv_idle']} "
            f"server connection(s) idle: its pool of {pooler.get('pool_size')} is held by clients that never give it back"
        )
    if pooler.get("mode") == "transaction" and linked > tolerance:
        problems.append(
            f"{linked} server connection(s) still linked to a client at PgBouncer (transaction mode) after traffic "
            "stopped: transactions nobody ended"
        )
    detail = "; ".join(problems) or (
        f"PgBouncer ({pooler.get('mode')} mode): no client waiting, {final['sv_active']} server connection(s) "
        f"in use, {final['sv_idle']} idle"
    )
    return Check("pooler", not problems, detail, {"mode": pooler.get("mode"), **final})


def _leak_reason(check: Check, final: dict[str, float], tally: _Tally) -> str:
    if check.name != "probe":
        return check.detail
    return (
        "the service no longer serves after traffic stopped (the probe failed while the process is up): "
        "its pool is exhausted"
    )


def _decide(checks: list[Check], e: Evidence, m: _Measures) -> tuple[str, list[str], list[str]]:
    """The ladder ERROR > LEAK > SATURATED > PASS: (outcome, evidence, reasons).

    A full server is LEAK even when the target looks down: the leak is what took it down.
    """
    server_full = any(c.name == "server_limit" and not c.passed for c in checks)
    load, probe, final, tally, baseline_total = e.load or {}, e.probe, m.final, m.tally, m.baseline["total"]
    broken = broken_kinds(dict(e.load_kinds)) if e.load_kinds else []
    if load.get("requests") == 0:
        return (
            ERROR,
            ["no_load"],
            [
                "the load phase sent no request, so nothing was tested: check the locustfile "
                f"({load.get('exceptions', 0)} exception(s) in locust_exceptions.csv)"
            ],
        )
    if e.collector_lost:
        return (
            ERROR,
            ["collector_lost"],
            [
                "the collector stopped before the end of the run: counts after its last "
                "sample are unknown (what it wrote is in samples.csv)"
            ],
        )
    if broken and not server_full:
        return ERROR, ["load_invalid"], broken
    if not probe.target_alive and not server_full:
        return ERROR, ["target_down"], [f"the target is down: {probe.detail or 'it does not accept connections'}"]
    if not m.tail and not server_full:
        return (
            ERROR,
            ["no_samples"],
            ["the collector recorded nothing after the load: connection counts cannot be judged"],
        )
    failed = [c for c in checks if not c.passed and c.name != "saturation"]  # LEAK wins over SATURATED
    saturated = [c.detail for c in checks if c.name == "saturation" and not c.passed]
    if (still := _still_working(failed, saturated, final, tally)) is not None:
        return still
    if failed:
        return LEAK, [c.name for c in failed], [_leak_reason(c, final, tally) for c in failed]
    if saturated:
        return (
            SATURATED,
            ["saturation"],
            [f"{saturated[0]}; every connection came back after the traffic: saturation, not a leak"],
        )
    if (unproven := _unproven_drain(m.drift, final, tally, baseline_total, e.tolerance)) is not None:
        return ERROR, ["baseline_moved"], [unproven]
    back = (
        f"connections back to baseline ({baseline_total:.0f})"
        + (f" {human_seconds(m.recovery_s)} after traffic stopped" if m.recovery_s is not None else "")
        if final["total"] <= baseline_total + e.tolerance
        else f"{final['total']:.0f} connections after settle, {final['total'] - baseline_total:.0f} over baseline "
        f"({baseline_total:.0f}), every one idle in its pool (a warm pool)"
    )
    return PASS, [c.name for c in checks], [back + "; no connection left in use; the service still serves"]


def _still_working(
    failed: list[Check], saturated: list[str], final: dict[str, float], tally: _Tally
) -> tuple[str, list[str], list[str]] | None:
    """Work for clients that left was still running when --settle ran out, holding the pool with no
    connection given up: not a leak, not yet a pass (SATURATED stands if the load showed it)."""
    busy = max(final["active"], tally.kinds.get(ACTIVE, 0))
    # connections the pools count out are in use by the work still running, not given up
    working_only = all(
        c.numbers.get("checked_out", 0) <= c.numbers.get("active", 0) for c in failed if c.name == "pool_view"
    )
    if not (failed and busy and not tally.leaked_rows and {c.name for c in failed} <= {"probe", "pool_view"}):
        return None
    if not working_only:
        return None
    working = (
        f"settle ended while {busy:.0f} backend(s) were still working for clients that have gone "
        "(zombie work holds the pool; no connection is held)"
    )
    if saturated:  # what the load showed stands; whether every connection comes back is not known yet
        return SATURATED, ["saturation"], [saturated[0], f"{working}: give it a longer --settle to see it drain"]
    return ERROR, ["still_working"], [f"{working}: give it a longer --settle"]


def _unproven_drain(
    drift: Mapping[str, Any], final: dict[str, float], tally: _Tally, baseline_total: float, tolerance: int
) -> str | None:
    """Why a count back "under baseline" proves nothing here, or None when it does."""
    before = drift.get("before_warmup")
    if not drift["moved"] or before is None or final["total"] >= baseline_total - tolerance:
        return None
    unexplained = final["total"] - max(before, tally.pool_idle)  # over the count before any traffic, not in a pool
    if unexplained <= tolerance:
        return None
    return (
        f"inconclusive: the baseline moved from {drift['low']:.0f} to {drift['high']:.0f} connections while no "
        f"traffic ran, so it may already hold leaked ones, and the final {final['total']:.0f} is under it but "
        f"{final['total'] - before:.0f} over the {before:.0f} before warm-up, none shown idle in a pool: "
        "give a longer --baseline, or expose the pool view (--pool-view) so drainwatch can tell"
    )


def _caveats(
    outcome: str,
    load: Mapping[str, int],
    gaps: dict[str, Any],
    zombie: dict[str, Any],
    drift: Mapping[str, Any],
    pool_view: Mapping[str, Any] | None = None,
) -> list[str]:
    """What the reader must know about the evidence, whatever the verdict."""
    notes = []
    if drift["moved"] and outcome != ERROR:
        notes.append(
            f"the baseline moved from {drift['low']:.0f} to {drift['high']:.0f} connections while no traffic ran: "
            "something other than the load opens or closes them (a garbage collector, a pool's idle timeout, "
            "another client the selector takes in); counts are compared with its median"
        )
    if zombie["peak_active"] and outcome == PASS:
        notes.append(
            f"zombie work: {zombie['peak_active']} backend(s) kept working up to {human_seconds(zombie['lasted_s'])} "
            "after traffic stopped, for clients that had gone; settle waited for it, and none was left holding a connection"
        )
    if load.get("exceptions") and outcome != ERROR:
        notes.append(
            f"Locust's users raised {load['exceptions']} exception(s) (locust_exceptions.csv): the load may "
            "not be the one you meant"
        )
    if outcome == PASS and (small := small_pool_note(pool_view)):
        notes.append(small)
    if gaps["count"]:
        notes.append(
            f"PostgreSQL could not be reached for {human_seconds(gaps['seconds'])} during the run ({gaps['count']} "
            "missed samples): connections from before the gap are gone, so leaks before it show only through the "
            "probe and the pool view"
        )
    return notes


def small_pool_note(pool_view: Mapping[str, Any] | None) -> str | None:
    """On a PASS: the pools whose requests waited long for a connection, as the app counted them.
    Short waits are a busy pool doing its job; a wait a user would feel is a pool too small."""
    pools = ((pool_view or {}).get("pools") or {}).items()
    said = []
    for name, pool in pools:
        if not isinstance(pool, Mapping) or not (waited := int(pool.get("waited") or 0)):
            continue
        longest, total = float(pool.get("wait_max_s") or 0), float(pool.get("wait_total_s") or 0)
        if longest >= SMALL_POOL_WAIT or total / waited >= SMALL_POOL_WAIT / 2:
            wait = f"up to {human_seconds(longest)}" if longest else f"{human_seconds(total / waited)} on average"
            said.append(f"{waited} request(s) waited for a connection of {name} (limit {pool.get('limit')}), {wait}")
    if not said:
        return None
    return (
        f"pool too small for this load: {'; '.join(said)}; nothing was held after the load: a small pool is not "
        "a leak (give it more connections, or fewer --users)"
    )


def _opened_per_request(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Many held connections, each opened at its own moment: not a pool's, a connection per request or thread."""
    starts = [round(float(r.get("backend_age_s") or 0), 1) for r in rows]
    if len(starts) < 5:
        return False
    return len(set(starts)) >= 0.8 * len(starts) and max(starts) - min(starts) >= 1.0


def _baseline_drift(
    samples: Sequence[Mapping[str, Any]], phases: Mapping[str, tuple[float, float]], tolerance: int
) -> dict[str, Any]:
    """How far the count moved while no traffic ran, and the count before warm-up: a baseline that
    moves by itself (a garbage collector closing abandoned connections, a pool timing them out)
    may already hold a leak, and then a final count under it proves nothing."""
    start, end = phases.get("baseline", (0.0, 0.0))
    quiet = [float(s["total"]) for s in _window(samples, start, end)]
    warmup_start = phases.get("warmup", (start, start))[0]
    before = [float(s["total"]) for s in samples if float(s["t"]) < warmup_start and not int(s.get("gap", 0))]
    low, high = (min(quiet), max(quiet)) if quiet else (0.0, 0.0)
    return {
        "low": low,
        "high": high,
        "moved": high - low > tolerance,
        "before_warmup": before[-1] if before else None,
    }


def _checkout_sites(pool_view: Mapping[str, Any] | None) -> dict[str, int]:
    """Connections still checked out after settle, by the application frame that took them."""
    taken = (pool_view or {}).get("checkouts") or []
    sites = Counter(str(c["stack"][0]) for c in taken if isinstance(c, Mapping) and c.get("stack"))
    return dict(sites.most_common(10))


def _collected_sites(pool_view: Mapping[str, Any] | None) -> dict[str, int]:
    """Connections dropped without close() that the garbage collector ended, by the frame that took them."""
    sites: Counter[str] = Counter()
    for group in (pool_view or {}).get("collected") or []:
        if isinstance(group, Mapping) and group.get("stack"):
            sites[str(group["stack"][0])] += int(group.get("count") or 0)
    return dict(sites.most_common(10))


def _waiting(pool_view: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The groups of tasks and threads the pool view saw still at work after settle, most first."""
    groups = (pool_view or {}).get("waiting") or []
    return [dict(g) for g in groups if isinstance(g, Mapping) and g.get("at") and g.get("count")][:10]


SMALL_POOL_WAIT = 0.5  # seconds a request waited for a connection: a wait a user feels, not a busy pool

# A task waiting in the web framework's own plumbing waits on another task (BaseHTTPMiddleware's
# call_next runs the endpoint in a task of its own): the other task says where the time goes.
PLUMBING = ("anyio/", "starlette/", "uvicorn/", "fastapi/", "h11/", "httptools/", "aiohttp/web", "django/core/handlers")


def telling(groups: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The groups of busy tasks and threads that say where time goes, not those waiting on another task."""
    return [g for g in groups if not str(g.get("waiting_in") or "").startswith(PLUMBING)]


def waiting_sentence(group: Mapping[str, Any]) -> str:
    """One group of the service's busy tasks or threads, as a reader wants it."""
    count, what = int(group.get("count") or 0), str(group.get("what") or "task")
    where, inner = str(group.get("at") or "?"), str(group.get("waiting_in") or "")
    said = f"{count} {what}{'s' if count != 1 else ''} at {where}"
    return said + (f", waiting in {inner}" if inner and inner != where else "")


def _recovery(tail: Sequence[Mapping[str, Any]], limit: float, load_end: float) -> float | None:
    """Seconds from the end of the load to the first sample back within ``limit`` connections."""
    for sample in tail:
        if float(sample["total"]) <= limit:
            return round(float(sample["t"]) - load_end, 2)
    return None


@dataclass(frozen=True)
class Evidence:
    """What one cycle collected, as ``run.evidence`` read it: everything the judge weighs."""

    samples: Sequence[Mapping[str, Any]]  # the collector's rows (read_samples folds the load into one)
    phases: Mapping[str, tuple[float, float]]  # warmup/baseline/load/settle → (start, end) unix times
    lingering: Sequence[Mapping[str, Any]]  # the target's connections after settle, classified
    probe: ProbeResult
    tolerance: int = 0
    pool_view: Mapping[str, Any] | None = None  # the app's own pool counts after settle, if any
    collector_lost: bool = False
    load: Mapping[str, int] | None = None  # requests, exceptions and users of the load phase
    load_kinds: Mapping[str, Any] | None = None  # per chaos kind: requests, failures, what tested nothing
    server: Mapping[str, Any] | None = None  # max_connections, usable slots, the peak, refusals
    at_baseline: Sequence[Mapping[str, Any]] | None = None  # the connections at the end of the baseline
    pooler: Mapping[str, Any] | None = None  # PgBouncer's SHOW POOLS at baseline and after settle
    hangups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per disconnect request
    # per route, the connections its requests held and gave back during the load (the pool view's, after
    # minus before): count, total_s, p50_s, p95_s, max_s
    holds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: Sequence[str] = ()  # what the run itself has to say (a snapshot that failed, a rate not reached)


@dataclass(frozen=True)
class _Measures:
    """What the judge measures from the evidence before any check: the levels, the settle
    window, how connections were reused, and each connection left open, classified."""

    baseline: dict[str, float]
    final: dict[str, float]
    tail: list[Mapping[str, Any]]  # the samples of settle
    recovery_s: float | None
    reuse: Reuse
    tally: _Tally
    drift: dict[str, Any]
    zombie: dict[str, Any]
    load: tuple[float, float]  # the load phase's (start, end), the baseline's end when it has none
    settle: tuple[float, float]
    gaps: dict[str, Any]  # samples the collector missed from the load to the end of settle


def _measure(e: Evidence) -> _Measures:
    base_start, base_end = e.phases.get("baseline", (0.0, 0.0))
    load_start, load_end = e.phases.get("load", (base_end, base_end))
    settle_start, settle_end = e.phases.get("settle", (load_end, load_end))
    load = e.load or {}
    baseline = _levels(_window(e.samples, base_start, base_end), "median")
    tail = _window(e.samples, settle_start, settle_end)
    # preflight's requests are traffic too: a connection opened for one of them served a request
    traffic_start = min(e.phases.get(name, (load_start, load_start))[0] for name in ("preflight", "warmup", "baseline"))
    reuse = _reuse(e.samples, load_start, load_end, int(load.get("requests") or 0), int(load.get("users") or 0))
    return _Measures(
        baseline=baseline,
        final=_levels(tail[-1:], "max"),
        tail=tail,
        recovery_s=_recovery(tail, baseline["total"] + e.tolerance, load_end),
        reuse=reuse,
        tally=_tally(e.lingering, e.pool_view, traffic_start, (load_start, load_end), reuse),
        drift=_baseline_drift(e.samples, e.phases, e.tolerance),
        zombie=_zombie(tail, load_end),
        load=(load_start, load_end),
        settle=(settle_start, settle_end),
        gaps=_gaps(e.samples, load_start, settle_end),
    )


def _checks(e: Evidence, m: _Measures) -> list[Check]:
    """Every check that applies, in the order they are reported (the drain check first)."""
    base_start, base_end = e.phases.get("baseline", (0.0, 0.0))
    tally, tolerance = m.tally, e.tolerance
    checks = [
        _check_drain(
            m.baseline, m.final, tally, tolerance, m.recovery_s, e.pool_view is not None, m.drift["before_warmup"]
        ),
        _check_idle_in_transaction(tally, tolerance),
        _check_held(tally, tolerance),
        _check_single_use(tally, tolerance, m.reuse),
    ]
    if e.pool_view is not None:
        checks.append(_check_pool_view(e.pool_view, tally, tolerance))
    checks.append(_check_probe(e.probe))
    if (saturation := _check_saturation(e.load_kinds, m.zombie, e.pool_view, _busy(e.holds, m.load))) is not None:
        checks.append(saturation)
    if e.at_baseline is not None:
        checks.append(_check_baseline(e.at_baseline, base_end - base_start, tolerance))
    if e.server is not None:
        checks.append(_check_server(e.server))
    if e.pooler is not None and e.pooler.get("final") is not None:
        checks.append(_check_pooler(e.pooler, tolerance))
    return checks


def judge(evidence: Evidence) -> Verdict:
    """Weigh the evidence of one cycle: measure, check, decide, then say why."""
    e, m = evidence, _measure(evidence)
    checks = _checks(e, m)
    outcome, deciding, reasons = _decide(checks, e, m)
    reasons += _reuse_reasons(m.tally, m.reuse, m.drift, m.baseline["total"], e.tolerance)
    reasons += _caveats(outcome, e.load or {}, m.gaps, m.zombie, m.drift, e.pool_view)
    reasons += e.notes
    invisible = m.tally.invisible(e.pool_view)
    leaked = max(len(m.tally.leaked_rows) + invisible, checks[0].numbers["counted_excess"])
    if outcome == LEAK and checks[0].passed and leaked:
        checks[0].detail += (
            f"; yet {leaked} connection(s) are held: they took the place of pooled ones, so the count alone "
            "does not show this leak"
        )
    # The probe (or a full server) can see a leak no row shows: then the count is only a floor.
    exact = outcome != LEAK or leaked > 0 or not ({"probe", "server_limit", "single_use"} & set(deciding))
    said = _Said(outcome, deciding, reasons, checks, leaked, exact, invisible)
    return _verdict(e, m, said)


@dataclass(frozen=True)
class _Said:
    """What the judge decided, before it is written into a Verdict with what it measured."""

    outcome: str
    evidence: list[str]
    reasons: list[str]
    checks: list[Check]
    leaked: int
    exact: bool
    invisible: int  # connections the pools count that PostgreSQL no longer has


def _verdict(e: Evidence, m: _Measures, said: _Said) -> Verdict:
    tally, pool_view = m.tally, e.pool_view
    return Verdict(
        outcome=said.outcome,
        reasons=said.reasons,
        evidence=said.evidence,
        checks=said.checks,
        baseline=m.baseline,
        peak=_levels(_window(e.samples, m.load[0], m.settle[1]), "max"),
        final=m.final,
        leaked=said.leaked,
        leaked_exact=said.exact,
        leaked_by_kind={
            HELD: tally.held,
            IN_TRANSACTION: len(tally.iit_rows),
            "single_use": len(tally.single_use),
            "invisible": said.invisible,
        },
        # a LEAK has no recovery: the count may be back, but connections are held or the service starves
        recovery_s=None if said.outcome == LEAK else m.recovery_s,
        zombie=m.zombie,
        gaps=m.gaps,
        pooled_idle=tally.pooled,
        idle_in_transaction={"count": len(tally.iit_rows), "oldest_s": round(tally.oldest_iit, 2)},
        probe=asdict(e.probe) | {"passed": e.probe.passed},
        pool_view=dict(pool_view) if pool_view is not None else None,
        scenarios=dict(Counter(row.get("scenario") or "unknown" for row in tally.leaked_rows)),
        routes=dict(Counter(row.get("route") or "unknown" for row in tally.leaked_rows)),
        tolerance=e.tolerance,
        server=dict(e.server) if e.server is not None else None,
        baseline_drift=m.drift,
        pooler=dict(e.pooler) if e.pooler is not None else None,
        checkout_sites=_checkout_sites(pool_view),
        waiting=_waiting(pool_view),
        collected_sites=_collected_sites(pool_view),
        load_kinds=dict(e.load_kinds) if e.load_kinds is not None else None,
        attribution=attribution_summary(tally.leaked_rows) if tally.leaked_rows else None,
        oldest_held_s=round(max((float(r.get("state_age_s") or 0) for r in tally.leaked_rows), default=0.0), 2),
        per_request=_opened_per_request([r for r in e.lingering if r["kind"] in (HELD, IN_TRANSACTION, UNSURE)])
        or bool(tally.single_use),
        reuse=asdict(m.reuse) | {"never_reused": len(tally.single_use)},
        never_reused=sorted(int(row["pid"]) for row in tally.single_use if row.get("pid") not in (None, "")),
        hangups={label: dict(row) for label, row in e.hangups.items()},
        holds=_busy(e.holds, m.load),
    )


def _busy(holds: Mapping[str, Mapping[str, Any]], load: tuple[float, float]) -> dict[str, dict[str, Any]]:
    """Each route's holds with ``busy``: the connections it kept out on average while the load ran
    (its total hold time over the load's length: Little's law, L = λW)."""
    seconds = load[1] - load[0]
    return {
        route: {**h, "busy": round(float(h.get("total_s") or 0) / seconds, 2) if seconds > 0 else None}
        for route, h in holds.items()
    }


def holds_busy(holds: Mapping[str, Mapping[str, Any]], limit: Any) -> bool:
    """Did one route keep a quarter of the pools (one connection, with no limit known) busy on average?"""
    busy = max((float(h.get("busy") or 0) for h in holds.values() if isinstance(h, Mapping)), default=0.0)
    return busy >= (0.25 * float(limit) if limit else 1.0)


def holds_sentence(holds: Mapping[str, Mapping[str, Any]], limit: Any = None) -> str | None:
    """The route that held the pool longest, in a sentence: its p95 hold and what it kept busy."""
    if not holds:
        return None
    route, h = next(iter(holds.items()))
    busy = h.get("busy")
    said = (
        f"{route} held its connection {human_hold(float(h.get('p95_s') or 0))} at p95 "
        f"(longest {human_hold(float(h.get('max_s') or 0))}, {int(h.get('count') or 0):,} holds)"
    )
    if busy is not None:
        said += f", keeping {busy:g} connection(s) busy on average during the load"
        said += f"; the pools give {limit}" if limit else ""
    return said


def recovery_sentence(recovery_s: float | None, final_total: float | None, baseline_total: float | None) -> str:
    """When the count came back to baseline, said once for every renderer: a count that fell under
    the baseline while connections stayed held is not "never" back, nor a recovery."""
    if recovery_s is not None:
        return f"{human_seconds(recovery_s)} after traffic stopped"
    if final_total is not None and baseline_total is not None and final_total < baseline_total:
        return f"the count fell under it ({final_total:.0f} of {baseline_total:.0f}), and connections stay held"
    return "never"


def with_faults(verdict: Verdict, events: Sequence[Mapping[str, Any]]) -> Verdict:
    """The verdict naming each fault drainwatch injected and what it did: the reader must know the
    run was not a quiet one."""
    injected = [e for e in events if e.get("fault")]
    faults = [{k: e[k] for k in ("fault", "kind", "start", "end", "detail", "error") if k in e} for e in injected]
    if not injected:
        return replace(verdict, faults=faults)
    said = "; ".join(
        f"{e['fault']} ({'failed: ' + str(e['error']) if e.get('error') else e.get('detail') or 'done'})"
        for e in injected
    )
    return replace(verdict, faults=faults, reasons=[*verdict.reasons, f"faults drainwatch injected: {said}"])


DIED = "process_died"


def with_deaths(verdict: Verdict, deaths: Sequence[str]) -> Verdict:
    """The verdict of a run in which PostgreSQL or the service died by itself: ERROR, saying so, and
    nothing about the service's connections (what they did after that is not evidence)."""
    kept = [r for r in verdict.reasons if r.startswith("not tested:")]
    return replace(verdict, outcome=ERROR, evidence=[DIED], reasons=[*deaths, *kept])


def with_shutdown(verdict: Verdict, shutdown: Mapping[str, Any]) -> Verdict:
    """The verdict with the shutdown check added: after SIGTERM the service must exit by itself
    and close every connection. A service that keeps them leaks a pool on every deploy."""
    left = shutdown.get("remaining") or []
    passed = not left and not shutdown.get("killed") and not shutdown.get("already_exited")
    if shutdown.get("already_exited"):
        detail = (
            f"the service had already exited (exit code {shutdown.get('exit_code')}) before drainwatch stopped it: "
            "it died during the run, it did not shut down"
        )
    elif passed:
        detail = (
            f"after SIGTERM the service exited in {human_seconds(shutdown['exited_s'])} and closed every connection"
        )
    elif shutdown.get("killed"):
        detail = (
            f"after SIGTERM the service did not exit within {human_seconds(shutdown['grace_s'])} and was killed"
            + (f", still holding {len(left)} connection(s)" if left else "")
        )
    else:
        detail = f"{len(left)} connection(s) of the service stayed open after it exited on SIGTERM"
    checked = replace(verdict, checks=[*verdict.checks, Check("shutdown", passed, detail, dict(shutdown))])
    if not passed and verdict.outcome in (PASS, SATURATED):
        return replace(checked, outcome=LEAK, evidence=["shutdown"], reasons=[detail])
    if not passed and verdict.outcome == LEAK:
        return replace(checked, evidence=[*verdict.evidence, "shutdown"], reasons=[*verdict.reasons, detail])
    return checked


LEAK_WARNINGS = ("gc_cleanup", "connection_dropped")  # what a service logs of a connection it never gave back


def with_service_warnings(verdict: Verdict, counts: Mapping[str, int]) -> Verdict:
    """The verdict with what the service itself logged. A connection the garbage collector had to
    clean up was never given back (SQLAlchemy's "non-checked-in connection", psycopg's "deleted while
    still open"): a check of its own, a LEAK even when the count came back. The rest is said, never
    decides (a pool that ran out under load is not a leak by itself)."""
    reasons = list(verdict.reasons)
    if counts:
        said = "; ".join(f"{n} × {describe(kind)}" for kind, n in counts.items())
        reasons.append(f"the service logged: {said} (logs/target.log, service-warnings.csv)")
    logged = sum(counts.get(kind, 0) for kind in LEAK_WARNINGS)
    seen = sum(verdict.collected_sites.values())  # as the pool view recorded them, logged or not
    dropped = max(logged, seen)
    said = " and ".join(
        what for n, what in ((logged, f"its log says {logged}"), (seen, f"its pool view saw {seen}")) if n
    )
    detail = (
        f"the service dropped {dropped} connection(s) without giving them back, closed later by the garbage "
        f"collector ({said})"
        if dropped
        else "the service left no connection to the garbage collector (its log, and its pool view when it has one)"
    )
    check = Check(
        "leak_warnings", dropped <= verdict.tolerance, detail, {"count": dropped, "logged": logged, "seen": seen}
    )
    verdict = replace(verdict, service_warnings=dict(counts), checks=[*verdict.checks, check], reasons=reasons)
    if not check.passed and verdict.outcome in (PASS, SATURATED):
        # the log says connections leaked: no row shows them when none was counted
        verdict = replace(
            verdict,
            outcome=LEAK,
            evidence=["leak_warnings"],
            reasons=[detail, *reasons[1:]],
            leaked_exact=verdict.leaked > 0,
        )
    elif not check.passed and verdict.outcome == LEAK:
        verdict = replace(verdict, evidence=[*verdict.evidence, "leak_warnings"])
    if verdict.outcome == PASS and counts.get("pool_exhausted"):
        small = (
            f"pool too small for this load: the service's pool ran out {counts['pool_exhausted']} time(s) while the "
            "load ran, and nothing was held after it: a small pool is not a leak (give it more connections, "
            "or fewer --users)"
        )
        verdict = replace(verdict, reasons=[*verdict.reasons, small])
    return verdict
