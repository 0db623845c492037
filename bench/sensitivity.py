"""Sensitivity: is one leaked connection in a 60 s run detected, and does the fixed variant stay PASS?

    python bench/sensitivity.py [--duration 60] [--repeat 20] [--fp-duration 15]

Part 1, one leak: `drainwatch run --variant fixed --locustfile bench/leak_one_locustfile.py
--duration 60s`: steady traffic on the fixed demo service, where exactly one request in the
whole run (POST /debug/leak-one, half-way through) checks out one raw connection and never
returns it. Target: verdict LEAK, leaked = 1, attributed to the leak-one request.

Part 2, false positives: --repeat runs of the plain fixed variant with the default chaos
mix (`drainwatch run --variant fixed --duration 15s`). The load phase is shortened from the
default 30 s to --fp-duration (15 s) so that 20 runs take about 15 minutes instead of 20;
warm-up, baseline and settle keep their defaults, since a false positive would come from
those (a baseline taken too early, a settle that ends too soon). Target: 0 runs not PASS.

Each run is a whole `drainwatch run` (its own embedded PostgreSQL and demo service).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from _common import REPO, banner, drainwatch_run, env_note, read_csv, scratch, table, verdict_mark

LOCUSTFILE = REPO / "bench" / "leak_one_locustfile.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="load phase of the one-leak run (default 60)")
    parser.add_argument("--repeat", type=int, default=20, help="plain fixed runs for false positives (default 20)")
    parser.add_argument(
        "--fp-duration",
        type=float,
        default=15,
        help="load phase of each of those runs (default 15)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args(argv)

    work = scratch("sensitivity", args.keep)
    print(
        f"sensitivity benchmark: 1 run with one leak ({args.duration:g}s load) + {args.repeat} fixed runs "
        f"({args.fp_duration:g}s load); {env_note()}; run folders in {work}",
        flush=True,
    )

    print("  part 1: one leaked connection ...", flush=True)
    one = drainwatch_run(
        ["--variant", "fixed", "--locustfile", str(LOCUSTFILE), "--duration", f"{args.duration:g}s"], work, "leak-one"
    )
    summary = one.summary()
    stats = read_csv(one.run_dir / "locust_stats.csv") if (one.run_dir / "locust_stats.csv").exists() else []
    sent = sum(int(r["Request Count"]) for r in stats if r["Name"].endswith(" /debug/leak-one"))
    verdict, leaked = summary.get("verdict"), summary.get("leaked")

    false_positives: list[str] = []
    outcomes: Counter[str] = Counter()
    for i in range(args.repeat):
        run = drainwatch_run(
            ["--variant", "fixed", "--duration", f"{args.fp_duration:g}s"],
            work,
            f"fixed-{i + 1:02d}",
        )
        s = run.summary()
        outcomes[str(s.get("verdict"))] += 1
        line = f"  part 2: fixed run {i + 1}/{args.repeat}: {s.get('verdict')} (exit {run.code}, {run.wall:.0f}s)"
        if s.get("verdict") != "PASS":
            false_positives.append(f"{run.run_dir.name}: {s.get('verdict')} — {'; '.join(s.get('reasons', []))}")
            line += f" — {'; '.join(s.get('reasons', []))}"
        print(line, flush=True)

    banner("sensitivity")
    detected = verdict == "LEAK" and leaked == 1
    rows = [
        [f"one leak in a {args.duration:g}s run: leak requests sent", sent, "1", verdict_mark(sent == 1)],
        ["  verdict", verdict, "LEAK", verdict_mark(verdict == "LEAK")],
        ["  leaked", leaked, "1", verdict_mark(leaked == 1)],
        [
            "  attributed to (scenario / route)",
            f"{summary.get('scenarios')} / {summary.get('routes')}",
            "leak-one",
            "-",
        ],
        ["  decided by", ", ".join(summary.get("evidence", [])) or "-", "", "-"],
        [
            f"fixed variant, {args.repeat} runs of {args.fp_duration:g}s: not PASS",
            len(false_positives),
            "0",
            verdict_mark(not false_positives) if args.repeat else "-",
        ],
        ["  outcomes", dict(outcomes) or "-", "", "-"],
        [
            "smallest leak detected by the default run",
            "1 connection" if detected else "not shown (1 missed)",
            "1 connection",
            verdict_mark(detected),
        ],
    ]
    print(table(["figure", "measured", "target", ""], rows))
    for fp in false_positives:
        print(f"false positive: {fp}")
    if not detected:
        print(f"one-leak run: exit {one.code}; reasons: {'; '.join(summary.get('reasons', []))}; folder {one.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
