"""The verdict: PASS, LEAK or ERROR, with the numbers and the evidence that decided it.

A pure function of what the run collected (samples, the lingering snapshot, the probe),
so tests call it without a database. The checks, in the order they are reported:

    drain                connections back within tolerance of baseline after settle
                         (an excess made only of pooled, reset connections is a warm pool)
    idle_in_transaction  nothing left idle in a transaction
    held_connections     no idle connection still holding application work
    probe                the service still serves after settle
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.lingering import HELD, IN_TRANSACTION, POOLED

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
    checks: list[Check]
    baseline: dict[str, float]
    peak: dict[str, float]
    final: dict[str, float]
    leaked: int
    leaked_by_kind: dict[str, int]
    pooled_idle: int
    recovery_s: float | None
    idle_in_transaction: dict[str, Any]
    probe: dict[str, Any]
    scenarios: dict[str, int]
    routes: dict[str, int]
    tolerance: int

    @property
    def exit_code(self) -> int:
        return {PASS: 0, LEAK: 1}.get(self.verdict, 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _window(samples: Sequence[Mapping[str, Any]], start: float, end: float) -> list[Mapping[str, Any]]:
    return [s for s in samples if start <= float(s["t"]) <= end and not int(s.get("gap", 0))]


def _levels(samples: Sequence[Mapping[str, Any]], how: str) -> dict[str, float]:
    if not samples:
        return {key: 0 for key in STATE_KEYS}
    pick = statistics.median if how == "median" else max
    return {key: float(pick(float(s[key]) for s in samples)) for key in STATE_KEYS}


def judge(
    samples: Sequence[Mapping[str, Any]],
    phases: Mapping[str, tuple[float, float]],
    lingering: Sequence[Mapping[str, Any]],
    probe: ProbeResult,
    *,
    tolerance: int = 0,
) -> Verdict:
    """Weigh the evidence. ``phases`` maps baseline/load/settle to (start, end) unix times."""
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
    pooled = kinds.get(POOLED, 0)
    excess = final["total"] - baseline["total"]
    unexplained = max(0.0, excess - pooled)  # what a warm pool cannot account for

    checks: list[Check] = []
    drained = excess <= tolerance or unexplained <= tolerance
    if excess <= tolerance:
        drain_detail = f"{final['total']:.0f} connections after settle, baseline {baseline['total']:.0f}"
    elif drained:
        drain_detail = (
            f"{final['total']:.0f} connections after settle, {excess:.0f} over baseline, "
            f"all of them idle in the pool (reset by the driver): a warm pool, not a leak"
        )
    else:
        drain_detail = (
            f"{final['total']:.0f} connections after settle, {excess:.0f} over baseline "
            f"{baseline['total']:.0f} (tolerance {tolerance})"
        )
    checks.append(
        Check("drain", drained, drain_detail,
              {"baseline": baseline["total"], "final": final["total"], "excess": excess, "recovery_s": recovery_s})
    )  # fmt: skip
    checks.append(
        Check(
            "idle_in_transaction",
            len(iit_rows) <= tolerance,
            f"{len(iit_rows)} connection(s) idle in transaction after settle, oldest {oldest_iit:.1f}s"
            if iit_rows else "no connection idle in transaction after settle",
            {"count": len(iit_rows), "oldest_s": round(oldest_iit, 2)},
        )
    )  # fmt: skip
    held = kinds.get(HELD, 0)
    checks.append(
        Check(
            "held_connections",
            held <= tolerance,
            f"{held} idle connection(s) still hold application work (their last statement is the "
            f"app's SQL, not the pool's reset)" if held else "every idle connection was reset by its pool",
            {"held": held, "pooled": pooled},
        )
    )  # fmt: skip
    checks.append(
        Check("probe", probe.passed,
              f"{probe.ok}/{probe.attempts} probe requests served" + (f": {probe.detail}" if probe.detail else ""),
              {"attempts": probe.attempts, "ok": probe.ok, "target_alive": probe.target_alive})
    )  # fmt: skip

    reasons: list[str] = []
    if not probe.target_alive:
        verdict = ERROR
        reasons.append(f"the target is down: {probe.detail or 'it does not accept connections'}")
    elif not tail:
        verdict = ERROR
        reasons.append("the collector recorded nothing after the load: connection counts cannot be judged")
    else:
        failed = [c for c in checks if not c.passed]
        verdict = LEAK if failed else PASS
        for check in failed:
            if check.name == "probe":
                reasons.append(
                    "the service no longer serves after traffic stopped (probe failed while the process is up): "
                    "its pool is exhausted"
                )
            else:
                reasons.append(check.detail)
        if verdict == PASS:
            reasons.append(
                f"connections back to baseline ({baseline['total']:.0f})"
                + (f" {recovery_s:.1f}s after traffic stopped" if recovery_s is not None else "")
                + "; no connection left in use; the service still serves"
            )

    scenarios = Counter(row.get("scenario") or "unknown" for row in leaked_rows)
    routes = Counter(row.get("route") or "unknown" for row in leaked_rows)
    return Verdict(
        verdict=verdict,
        reasons=reasons,
        checks=checks,
        baseline=baseline,
        peak=peak,
        final=final,
        leaked=max(len(leaked_rows), int(unexplained) if not drained else 0),
        leaked_by_kind={HELD: held, IN_TRANSACTION: len(iit_rows)},
        pooled_idle=pooled,
        recovery_s=recovery_s,
        idle_in_transaction={"count": len(iit_rows), "oldest_s": round(oldest_iit, 2)},
        probe=asdict(probe) | {"passed": probe.passed},
        scenarios=dict(scenarios),
        routes=dict(routes),
        tolerance=tolerance,
    )
