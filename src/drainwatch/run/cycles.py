"""Runs made of several cycles: each chaos kind alone (``--isolate``), or the disconnect kind
at several hang-up delays (``--sweep-disconnect``). Each cycle is a whole warm-up → baseline →
load → settle → probe of its own; the demo restarts between cycles so one cycle's exhausted
pool cannot spill into the next (a --target-url service with --no-restart shares its state across
cycles, and the report says so). The cycle itself is ``drainwatch.run.cycle``'s, passed in.
"""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from drainwatch.judge.verdict import Verdict
from drainwatch.rundir import LOCUST_PREFIX

# (run, phase prefix, mix, Locust CSV name, extra environment) → the cycle's verdict
Cycle = Callable[..., Awaitable[Verdict]]


async def isolated(run: Any, cycle: Cycle) -> Verdict:
    """Each chaos kind alone, steady first as the control; the demo restarts between kinds so
    one kind's exhausted pool cannot spill into the next."""
    kinds = ["steady"] + [kind for kind in ("disconnect", "timeout", "error") if run.cfg.mix.get(kind)]
    results: dict[str, dict[str, Any]] = {}
    verdicts: dict[str, Verdict] = {}
    for kind in kinds:
        if verdicts and run.target.restart is not None:
            await run.restart_target()
        csv_name = f"{LOCUST_PREFIX}-{kind}"
        verdict = await cycle(run, f"{kind}/", {kind: 1}, csv_name)
        verdicts[kind] = verdict
        results[kind] = isolation_row(run.run_dir / f"{csv_name}_stats.csv", kind, verdict)
        run.record.data.setdefault("isolation", {})[kind] = results[kind]
        run.record.save()
    return combine_isolated(verdicts, results)


async def swept(run: Any, cycle: Cycle) -> Verdict:
    """The disconnect kind alone at each hang-up delay, the demo restarted between delays:
    leak probability against delay shows the race window."""
    verdicts: dict[str, Verdict] = {}
    results: dict[str, dict[str, Any]] = {}
    for after_ms in run.cfg.sweep_disconnect:
        if verdicts and run.target.restart is not None:
            await run.restart_target()
        key = f"disconnect@{after_ms:g}ms"
        csv_name = f"{LOCUST_PREFIX}-{key.replace('@', '-')}"
        verdict = await cycle(
            run, f"{key}/", {"disconnect": 1}, csv_name, {"DRAINWATCH_DISCONNECT_AFTER_MS": f"{after_ms:g}"}
        )
        verdicts[key] = verdict
        row = isolation_row(run.run_dir / f"{csv_name}_stats.csv", "disconnect", verdict)
        row["after_ms"] = after_ms
        row["probability"] = round(verdict.leaked / row["requests"], 4) if row["requests"] else None
        results[key] = row
        run.record.data.setdefault("sweep", []).append(row)
        run.record.save()
    return combine_isolated(verdicts, results)


def isolation_row(stats_csv: Path, kind: str, verdict: Verdict) -> dict[str, Any]:
    try:
        with open(stats_csv, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("Name", "").startswith(f"{kind} ")]
    except OSError:
        rows = []
    requests = sum(int(float(row["Request Count"] or 0)) for row in rows)
    by_endpoint = {}
    for row in rows:
        route = row["Name"].split(" ", 2)[-1].strip("/").split("/")[0] or "/"
        leaked = verdict.routes.get(route, 0)
        count = int(float(row["Request Count"] or 0))
        by_endpoint[row["Name"].split(" ", 1)[1]] = {
            "requests": count,
            "leaked": leaked,
            "per_1000": round(1000 * leaked / count, 1) if count else None,
        }
    # Once its pool is exhausted a service cannot leak any more: the rate is then a floor.
    exhausted = not verdict.probe.get("passed", True) and verdict.probe.get("target_alive", True)
    return {
        "verdict": verdict.outcome,
        "leaked": verdict.leaked,
        "requests": requests,
        "per_1000": round(1000 * verdict.leaked / requests, 1) if requests else None,
        "lower_bound": exhausted,
        "evidence": verdict.evidence,
        "reasons": verdict.reasons,
        "endpoints": by_endpoint,
    }


def combine_isolated(verdicts: dict[str, Verdict], results: dict[str, dict[str, Any]]) -> Verdict:
    """One verdict for an isolated run: the worst kind's, with reasons naming every kind."""
    order = {"ERROR": 0, "LEAK": 1, "SATURATED": 2, "PASS": 3}
    worst_kind = min(verdicts, key=lambda kind: order[verdicts[kind].outcome])
    worst = verdicts[worst_kind]
    leaking = [k for k, v in verdicts.items() if v.outcome == "LEAK"]
    clean = [k for k, v in verdicts.items() if v.outcome == "PASS"]
    reasons = []
    if leaking:
        reasons.append(
            "leaked under "
            + ", ".join(
                f"{k} ({results[k]['leaked']} connection(s), {'at least ' if results[k]['lower_bound'] else ''}"
                f"{results[k]['per_1000']} per 1,000 {k} requests)"
                for k in leaking
            )
        )
    if clean:
        reasons.append("clean under " + ", ".join(clean))
    for kind, verdict in verdicts.items():
        if verdict.outcome == "ERROR":
            reasons.append(f"{kind}: " + "; ".join(verdict.reasons))
    scenarios = {k: results[k]["leaked"] for k in leaking}
    routes: dict[str, int] = {}
    for verdict in verdicts.values():
        for route, count in verdict.routes.items():
            routes[route] = routes.get(route, 0) + count
    return replace(
        worst,
        reasons=reasons,
        evidence=[f"{k}:{e}" for k in verdicts for e in verdicts[k].evidence if verdicts[k].outcome == worst.outcome],
        leaked=sum(v.leaked for v in verdicts.values()),
        scenarios=scenarios,
        routes=routes,
    )
