"""Wall time of the README's command, `drainwatch run`, split by phase; leaky and fixed.

    python bench/wall_time.py [--repeat 1]

Each run is the default run, as a user types it (`drainwatch run`, `drainwatch run
--variant fixed`), timed from outside. run.json gives each phase's start and end; what is
left is drainwatch's own overhead:

    start-up       process spawned -> run.json written (interpreter, imports, validation)
    between        gaps between phases (connection snapshots at baseline and after settle)
    teardown       end of the probe -> run.json finished (stopping collector, service, PostgreSQL)
    outputs+exit   run.json finished -> process gone (summary.json, junit.xml, report.html, verdict)

Reference: the configured phase lengths (warm-up up to 10 s + baseline 5 s + load 30 s +
settle up to 20 s = 65 s); target (issue "Performance at the user's scale"): the leaky run in
60 s at most, the fixed one in 45 s (warm-up ends once the pools stop growing, settle once every
connection is frozen). Before that work: leaky 66 s, fixed 53 s.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

from _common import RunResult, banner, drainwatch_run, env_note, scratch, table, verdict_mark

PHASES = ["provision", "warmup", "baseline", "load", "settle", "probe"]
NOMINAL = {"warmup": 10.0, "baseline": 5.0, "load": 30.0, "settle": 20.0}  # the CLI defaults
TARGET_S = {"leaky": 60.0, "fixed": 45.0}  # the whole run, seconds


def split(run: RunResult) -> dict[str, Any]:
    record = run.run_json()
    spans = {name: record["phases"][name] for name in PHASES if name in record["phases"]}
    parts: dict[str, Any] = {name: end - start for name, (start, end) in spans.items()}
    ordered = [spans[n] for n in PHASES if n in spans]
    parts["start-up"] = record["started"] - run.spawned
    parts["between phases"] = sum(b[0] - a[1] for a, b in itertools.pairwise(ordered))
    parts["teardown"] = record["finished"] - ordered[-1][1]
    parts["outputs + exit"] = run.exited - record["finished"]
    parts["total"] = run.wall
    parts["overhead"] = run.wall - sum(end - start for start, end in ordered)
    parts["verdict"] = run.summary().get("verdict")
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs (leaky, fixed), default 1")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args(argv)

    work = scratch("walltime", args.keep)
    print(
        f"wall-time benchmark: {args.repeat} x (leaky, fixed) default runs; {env_note()}; run folders in {work}",
        flush=True,
    )
    columns: list[tuple[str, dict[str, Any]]] = []
    for i in range(args.repeat):
        for variant in ("leaky", "fixed"):
            print(
                f"  run {i + 1}: drainwatch run{' --variant fixed' if variant == 'fixed' else ''} ...",
                flush=True,
            )
            run = drainwatch_run(["--variant", variant] if variant == "fixed" else [], work, f"{variant}-{i + 1}")
            columns.append((f"{variant} #{i + 1}", split(run)))

    banner("wall time of `drainwatch run` (default options), seconds")
    names = [
        "start-up",
        *PHASES,
        "between phases",
        "teardown",
        "outputs + exit",
        "total",
        "overhead",
    ]
    rows = []
    for name in names:
        nominal = NOMINAL.get(name)
        ref = {"total": "<= 60 / 45", "settle": "<= 20", "warmup": "<= 10"}.get(name, f"{nominal:g}" if nominal else "")
        rows.append([name, *(f"{c.get(name, float('nan')):.2f}" for _, c in columns), ref])
    rows.append(["verdict", *(c["verdict"] for _, c in columns), "LEAK / PASS"])
    print(table(["part", *(n for n, _ in columns), "configured"], rows))
    nominal_total = sum(NOMINAL.values())
    for name, c in columns:
        target = TARGET_S["fixed" if name.startswith("fixed") else "leaky"]
        print(
            f"{name}: total {c['total']:.1f} s = {c['total'] / nominal_total:.2f} x the configured phases "
            f"({nominal_total:g} s); overhead {c['overhead']:.1f} s of which start-up {c['start-up']:.1f} s; "
            f"target <= {target:g} s: {verdict_mark(c['total'] <= target)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
