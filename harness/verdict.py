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
    probe                the service still serves after settle

Counting alone is fooled: a pool warmed to its maximum hides a leak in the counts, and a
connection closed by the garbage collector or the server vanishes from
``pg_stat_activity`` while its pool still counts it. The last two checks see those.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.lingering import ACTIVE, HELD, IN_TRANSACTION, POOLED, UNSURE

PASS, LEAK, ERROR = "PASS", "LEAK", "ERROR"
STATE_KEYS = ("total", "active", "idle", "idle_in_transaction", "idle_in_transaction_aborted")


@dataclass
class ProbeResult:
    attempts: int = 0
    ok: int = 0
    target_alive: bool = True  # False: connection refused or the process is gone
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.attempts > 0 and self.ok == self.attempts


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    verdict: str
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

    @property
    def exit_code(self) -> int:
        return {PASS: 0, LEAK: 1}.get(self.verdict, 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def human_seconds(seconds: float) -> str:
    """``42.0s``, ``3m 05s``, ``9h 35m``: ages a person reads at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


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


def judge(
    samples: Sequence[Mapping[str, Any]],
    phases: Mapping[str, tuple[float, float]],
    lingering: Sequence[Mapping[str, Any]],
    probe: ProbeResult,
    *,
    tolerance: int = 0,
    pool_view: Mapping[str, Any] | None = None,
    collector_lost: bool = False,
    load: Mapping[str, int] | None = None,
) -> Verdict:
    """Weigh the evidence. ``phases`` maps baseline/load/settle to (start, end) unix times;
    ``pool_view`` is the app's own pool counts after settle (harness.instrument), if any."""
    base_start, base_end = phases.get("baseline", (0.0, 0.0))
    load_start, load_end = phases.get("load", (base_end, base_end))
    settle_start, settle_end = phases.get("settle", (load_end, load_end))

    baseline = _levels(_window(samples, base_start, base_end), "median")
    peak = _levels(_window(samples, load_start, settle_end), "max")
    tail = _window(samples, settle_start, settle_end)
    final = _levels(tail[-1:], "max")

    recovery_s = None
    for sample in tail:
        if float(sample["total"]) <= baseline["total"] + tolerance:
            recovery_s = round(float(sample["t"]) - load_end, 2)
            break

    kinds = Counter(row["kind"] for row in lingering)
    leaked_rows = [row for row in lingering if row["kind"] in (HELD, IN_TRANSACTION)]
    iit_rows = [row for row in lingering if row["kind"] == IN_TRANSACTION]
    oldest_iit = max((float(row.get("state_age_s") or 0) for row in iit_rows), default=0.0)
    held, pooled, unsure = kinds.get(HELD, 0), kinds.get(POOLED, 0), kinds.get(UNSURE, 0)
    # Idle connections the pool itself holds explain an excess over baseline (a warm pool):
    # the pool's own idle count when it tells us, otherwise those the driver reset.
    pool_idle = int(pool_view["idle"]) if pool_view else pooled
    excess = final["total"] - baseline["total"]
    not_in_pool = max(0.0, final["total"] - pool_idle)  # connections the pool does not hold idle
    drained = excess <= tolerance or not_in_pool <= tolerance

    checks: list[Check] = []
    if excess <= tolerance:
        drain_detail = f"{final['total']:.0f} connections after settle, baseline {baseline['total']:.0f}"
    elif drained:
        drain_detail = (
            f"{final['total']:.0f} connections after settle, {excess:.0f} over baseline, all of them idle "
            f"in the pool ({'as the pool itself counts' if pool_view else 'reset by the driver'}): a warm pool, not a leak"
        )
    else:
        drain_detail = (
            f"{final['total']:.0f} connections after settle, {excess:.0f} over baseline {baseline['total']:.0f} "
            f"(tolerance {tolerance}) and not idle in their pool"
            + (f"; {unsure} idle ones ran application SQL last in a pool that does not reset, so they may be leaked" if unsure else "")
        )
    checks.append(Check("drain", drained, drain_detail,
                        {"baseline": baseline["total"], "final": final["total"], "excess": excess, "recovery_s": recovery_s}))  # fmt: skip
    checks.append(
        Check(
            "idle_in_transaction",
            len(iit_rows) <= tolerance,
            f"{len(iit_rows)} connection(s) idle in transaction after settle, oldest {human_seconds(oldest_iit)}"
            if iit_rows else "no connection idle in transaction after settle",
            {"count": len(iit_rows), "oldest_s": round(oldest_iit, 2)},
        )
    )  # fmt: skip
    checks.append(
        Check(
            "held_connections",
            held <= tolerance,
            f"{held} idle connection(s) still hold application work (their last statement is the app's SQL, "
            "not the pool's reset)" if held else "no idle connection holds application work",
            {"held": held, "pooled": pooled, "unsure": unsure},
        )
    )  # fmt: skip
    if pool_view is not None:
        out = int(pool_view["checked_out"])
        seen = len(leaked_rows) + kinds.get(ACTIVE, 0)
        if out <= tolerance:
            detail = "the app's pools count nothing checked out"
        elif seen < out:
            detail = (f"the app's pools count {out} checked out, PostgreSQL shows {seen} of them: the other "
                      f"{out - seen} were closed behind the pool's back (garbage collector or server), and the pool still counts them")  # fmt: skip
        else:
            detail = f"the app's pools count {out} connection(s) checked out after settle"
        checks.append(Check("pool_view", out <= tolerance, detail, {"checked_out": out, "visible": seen,
                                                                  "limit": pool_view.get("limit")}))  # fmt: skip
    checks.append(
        Check("probe", probe.passed,
              f"{probe.ok}/{probe.attempts} probe requests served" + (f": {probe.detail}" if probe.detail else ""),
              {"attempts": probe.attempts, "ok": probe.ok, "target_alive": probe.target_alive})
    )  # fmt: skip

    reasons: list[str] = []
    failed = [c for c in checks if not c.passed]
    gaps = _gaps(samples, load_start, settle_end)
    load = load or {}
    if load.get("requests") == 0:
        verdict, evidence = ERROR, ["no_load"]
        reasons.append("the load phase sent no request, so nothing was tested: check the locustfile "
                       f"({load.get('exceptions', 0)} exception(s) in locust_exceptions.csv)")  # fmt: skip
    elif collector_lost:
        verdict, evidence = ERROR, ["collector_lost"]
        reasons.append("the collector stopped before the end of the run: counts after its last sample are unknown "
                       "(what it wrote is in samples.csv)")  # fmt: skip
    elif not probe.target_alive:
        verdict, evidence = ERROR, ["target_down"]
        reasons.append(f"the target is down: {probe.detail or 'it does not accept connections'}")
    elif not tail:
        verdict, evidence = ERROR, ["no_samples"]
        reasons.append("the collector recorded nothing after the load: connection counts cannot be judged")
    elif failed:
        verdict, evidence = LEAK, [c.name for c in failed]
        still_working = final["active"] > 0 and not leaked_rows
        for check in failed:
            if check.name == "probe" and still_working:
                reasons.append(
                    f"the service does not serve yet: {final['active']:.0f} backend(s) are still working for clients "
                    "that have gone (zombie work holds the pool, no connection is leaked); a longer --settle shows "
                    "whether it drains"
                )
            elif check.name == "probe":
                reasons.append("the service no longer serves after traffic stopped (the probe failed while the "
                               "process is up): its pool is exhausted")  # fmt: skip
            else:
                reasons.append(check.detail)
    else:
        verdict, evidence = PASS, [c.name for c in checks]
        reasons.append(
            f"connections back to baseline ({baseline['total']:.0f})"
            + (f" {human_seconds(recovery_s)} after traffic stopped" if recovery_s is not None else "")
            + "; no connection left in use; the service still serves"
        )

    if load.get("exceptions") and verdict != ERROR:
        reasons.append(f"Locust's users raised {load['exceptions']} exception(s) (locust_exceptions.csv): the load may "
                       "not be the one you meant")  # fmt: skip
    if gaps["count"]:
        reasons.append(
            f"PostgreSQL could not be reached for {human_seconds(gaps['seconds'])} during the run ({gaps['count']} "
            "missed samples): connections from before the gap are gone, so leaks before it show only through the "
            "probe and the pool view"
        )

    invisible = 0
    if pool_view is not None:
        invisible = max(0, int(pool_view["checked_out"]) - len(leaked_rows) - kinds.get(ACTIVE, 0))
    if verdict == LEAK:
        recovery_s = None  # the count may be back, but connections are still held or the service starves
    counted_excess = int(min(max(0.0, excess), not_in_pool)) if not drained else 0
    scenarios = Counter(row.get("scenario") or "unknown" for row in leaked_rows)
    routes = Counter(row.get("route") or "unknown" for row in leaked_rows)
    return Verdict(
        verdict=verdict,
        reasons=reasons,
        evidence=evidence,
        checks=checks,
        baseline=baseline,
        peak=peak,
        final=final,
        leaked=max(len(leaked_rows) + invisible, counted_excess),
        leaked_by_kind={HELD: held, IN_TRANSACTION: len(iit_rows), "invisible": invisible},
        pooled_idle=pooled,
        recovery_s=recovery_s,
        idle_in_transaction={"count": len(iit_rows), "oldest_s": round(oldest_iit, 2)},
        zombie=_zombie(tail, load_end),
        gaps=gaps,
        probe=asdict(probe) | {"passed": probe.passed},
        pool_view=dict(pool_view) if pool_view is not None else None,
        scenarios=dict(scenarios),
        routes=dict(routes),
        tolerance=tolerance,
    )
