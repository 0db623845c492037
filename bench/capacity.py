"""Capacity: the highest steady req/s `drainwatch run` drives, next to wrk and plain Locust.

    python bench/capacity.py [--seconds 20] [--connections 20] [--rounds 2] [--rate RPS | --default-wait]

All three hit the fixed demo's `GET /items` (one uvicorn process, one embedded PostgreSQL,
started here) with the same number of connections, as fast as they go, one after the other,
the order alternating between rounds:

    wrk         wrk -t1 -cN -dTs URL/items           (Debian's wrk: installed here when missing)
    plain       locust -f scenarios/steady.py -u N   (ChaosUser, a FastHttpUser; paced as drainwatch)
    drainwatch  drainwatch run --target-url URL … --mix steady=1 -u N --rate RPS   (its load phase)

drainwatch is asked for a rate (`--rate`, through its environment: `DRAINWATCH_RATE`; plain
Locust gets the same per-user pace, `DRAINWATCH_RATE_PER_USER`). The default asks for far more
than any of them reaches (100,000 req/s), so no user ever waits: the highest rate it sustains.
`--default-wait` keeps drainwatch's default wait instead (0-100 ms between a user's requests,
what a run without `--rate` does): that caps 20 users well below what wrk reaches here.

Each figure is printed as a ratio to wrk's in the same round: wrk is the reference of a load
generator that is not the bottleneck. Target (issue "Performance at the user's scale"):
drainwatch >= 0.9 x wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from _common import banner, demo_service, embedded_pg, env_note, scratch, table, verdict_mark
from overhead import plain_locust, through_drainwatch


def ensure_wrk() -> str | None:
    """wrk's path, installing Debian's package when missing; None (with the reason printed) when it cannot."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True, check=False, timeout=300)
        found = shutil.which("wrk")
    if not found:
        print("wrk is not installed and could not be (apt-get install wrk): its column is skipped")
    return found


def wrk_rps(wrk: str, url: str, connections: int, seconds: float) -> float:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"{url}/items"],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out[-600:]}")
    return float(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="load of each run (default 20)")
    parser.add_argument("--connections", type=int, default=20, help="connections / Locust users (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all three, order alternating (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate", type=float, default=100_000, help="req/s drainwatch is asked for (default 100000: no wait)"
    )
    pace.add_argument("--default-wait", action="store_true", help="drainwatch's default wait, no --rate")
    args = parser.parse_args(argv)
    # both Locust runs inherit the pace: drainwatch's option by its environment variable, plain
    # Locust the per-user figure drainwatch hands its own Locust
    if args.default_wait:
        os.environ.pop("DRAINWATCH_RATE", None)
        os.environ.pop("DRAINWATCH_RATE_PER_USER", None)
        asked = "drainwatch's default wait (0-100 ms)"
    else:
        os.environ["DRAINWATCH_RATE"] = f"{args.rate:g}"
        os.environ["DRAINWATCH_RATE_PER_USER"] = f"{args.rate / args.connections:.6g}"
        asked = f"--rate {args.rate:g}"
    # what overhead.py's runners read
    runner = argparse.Namespace(users=args.connections, spawn_rate=args.connections, seconds=args.seconds, warmup=3)

    wrk = ensure_wrk()
    work = scratch("capacity", args.keep)
    print(
        f"capacity benchmark: {args.rounds} rounds, {args.seconds:g}s each, {args.connections} connections, "
        f"{asked}; {env_note()}; scratch {work}",
        flush=True,
    )
    rounds: list[dict[str, float]] = []
    with embedded_pg(work / "postgres.log") as db, demo_service("fixed", db.dsn, work / "demo.log") as url:
        plain_locust(url, runner, 5, work / "warmup")  # fill the pools once
        for rnd in range(args.rounds):
            order = ["wrk", "plain", "drainwatch"] if rnd % 2 == 0 else ["drainwatch", "plain", "wrk"]
            got: dict[str, float] = {}
            for who in order:
                print(f"  round {rnd + 1}: {who} ...", flush=True)
                if who == "wrk" and wrk:
                    got[who] = wrk_rps(wrk, url, args.connections, args.seconds)
                elif who == "plain":
                    got[who] = plain_locust(url, runner, args.seconds, work / f"plain-{rnd}")[0]
                elif who == "drainwatch":
                    got[who] = through_drainwatch(url, db.dsn, runner, work, f"drainwatch-{rnd}")[0]
            rounds.append(got)

    banner(
        f"capacity: GET /items as fast as it goes, {args.connections} connections, {args.seconds:g}s per run, {asked}"
    )
    rows = []
    for rnd, got in enumerate(rounds):
        ref = got.get("wrk")
        rows.append(
            [
                f"round {rnd + 1}",
                f"{ref:.0f}" if ref else "-",
                f"{got['plain']:.0f}" + (f" ({got['plain'] / ref:.2f})" if ref else ""),
                f"{got['drainwatch']:.0f}" + (f" ({got['drainwatch'] / ref:.2f})" if ref else ""),
            ]
        )
    print(table(["run", "wrk req/s", "plain locust req/s (x wrk)", "drainwatch req/s (x wrk)"], rows))
    if all("wrk" in got for got in rounds):
        ratio = statistics.mean(got["drainwatch"] / got["wrk"] for got in rounds)
        print(f"drainwatch / wrk: {ratio:.2f} (mean of rounds); target >= 0.9: {verdict_mark(ratio >= 0.9)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
