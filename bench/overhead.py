"""Harness overhead: requests/s of steady traffic through `drainwatch run` vs plain `locust`.

    python bench/overhead.py [--seconds 30] [--users 20] [--spawn-rate 20] [--rounds 3]

Both hit the same service: one embedded PostgreSQL and one fixed demo service, started
here (`drainwatch demo-service --variant fixed`), so the only difference is the harness
around Locust (its collector sampling at 4 Hz, the run process):

    plain       locust -f scenarios/steady.py --headless -u U -r R -t T --csv ... --host URL
    drainwatch  drainwatch run --target-url URL --dsn DSN --app-name 'drainwatch-demo-fixed:%'
                    --variant fixed --mix steady=1 -u U -r R --duration T ...

`--mix steady=1` makes the load phase scenarios/mixed.py with only ChaosUser.steady, the
task scenarios/steady.py runs. Requests/s is Locust's own figure, from the Aggregated row
of each run's locust_stats.csv (for drainwatch: the load phase's, not the warm-up's).
Rounds alternate which of the two goes first. Target (DESIGN.md): ratio >= 0.95.

Throughput on a shared 2-core machine moves by tens of percent from minute to minute, so
the script also measures what the harness itself burns during the load phase (CPU of the
drainwatch process and its collector, psutil): on a saturated machine that is the most
throughput it can take away.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import psutil
from _common import (
    REPO,
    aggregated_rps,
    banner,
    command,
    demo_service,
    drainwatch_run,
    embedded_pg,
    env_note,
    scratch,
    table,
    verdict_mark,
)


class HarnessCpu:
    """CPU seconds of drainwatch's own processes (run process + collector) during its load phase."""

    def __init__(self) -> None:
        self.at_start: tuple[float, float] | None = None  # (unix time, cpu seconds)
        self.at_end: tuple[float, float] | None = None

    def __call__(self, proc: subprocess.Popen[bytes], run_dir: Path) -> None:
        if self.at_end is not None:
            return
        try:
            load = json.loads((run_dir / "run.json").read_text())["phases"].get("load")
        except (OSError, ValueError, KeyError):
            return
        if load and self.at_start is None:
            self.at_start = (load[0], self._cpu(proc.pid))
        elif load and load[1] is not None and self.at_start is not None:
            self.at_end = (load[1], self._cpu(proc.pid))

    @staticmethod
    def _cpu(pid: int) -> float:
        total = 0.0
        try:
            main = psutil.Process(pid)
            # Locust is the workload, not the harness: leave it (and its workers) out.
            procs = [main] + [c for c in main.children() if "locust" not in " ".join(c.cmdline())]
            for p in procs:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
        return total

    @property
    def share(self) -> float:
        """Share of one core, or NaN when the load phase was not seen start and end."""
        if not (self.at_start and self.at_end):
            return float("nan")
        return (self.at_end[1] - self.at_start[1]) / (self.at_end[0] - self.at_start[0])


def plain_locust(url: str, args: argparse.Namespace, seconds: float, prefix: Path) -> tuple[float, int]:
    argv = [
        *command("locust"),
        "-f",
        "scenarios/steady.py",
        "--headless",
        "-u",
        str(args.users),
        "-r",
        f"{args.spawn_rate:g}",
        "-t",
        f"{seconds:g}s",
        "--csv",
        str(prefix),
        "--host",
        url,
    ]
    with open(f"{prefix}.log", "wb") as log:
        subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=seconds + 60)
    return aggregated_rps(Path(f"{prefix}_stats.csv"))


def through_drainwatch(
    url: str, dsn: str, args: argparse.Namespace, out: Path, run_id: str
) -> tuple[float, int, float]:
    cpu = HarnessCpu()
    result = drainwatch_run(
        [
            "--target-url",
            url,
            "--dsn",
            dsn,
            "--app-name",
            "drainwatch-demo-fixed:%",
            "--variant",
            "fixed",
            "--mix",
            "steady=1",
            "-e",
            "GET /items",  # a --target-url service gets no demo default
            "-u",
            str(args.users),
            "-r",
            f"{args.spawn_rate:g}",
            "--duration",
            f"{args.seconds:g}s",
            "--warmup",
            f"{args.warmup:g}s",
            "--baseline",
            "2s",
            "--settle",
            "5s",
        ],
        out,
        run_id,
        watch=cpu,
    )
    if result.code not in (0, 1):
        raise RuntimeError(f"drainwatch run exited {result.code}: {(out / f'{run_id}.stdout').read_text()[-800:]}")
    rps, count = aggregated_rps(result.run_dir / "locust_stats.csv")
    return rps, count, cpu.share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="load duration of each run (default 30)")
    parser.add_argument("--users", type=int, default=20, help="Locust users (default 20, as drainwatch's)")
    parser.add_argument("--spawn-rate", type=float, default=20, help="users started per second (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both, order alternating (default 3)")
    parser.add_argument("--warmup", type=float, default=3, help="drainwatch's warm-up before its load (default 3 s)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (run folders, CSVs)")
    args = parser.parse_args(argv)

    work = scratch("overhead", args.keep)
    print(
        f"overhead benchmark: {args.rounds} rounds x 2 runs x {args.seconds:g}s, {args.users} users; {env_note()}; "
        f"scratch {work}",
        flush=True,
    )
    rounds: list[dict[str, tuple[float, int]]] = []
    cpu_shares: list[float] = []
    with (
        embedded_pg(work / "postgres.log") as db,
        demo_service("fixed", db.dsn, work / "demo.log") as url,
    ):
        # Fill the service's pools once, so neither side pays for a cold start.
        plain_locust(url, args, 5, work / "warmup")
        for rnd in range(args.rounds):
            got: dict[str, tuple[float, int]] = {}
            for who in ["drainwatch", "plain"] if rnd % 2 == 0 else ["plain", "drainwatch"]:
                print(f"  round {rnd + 1}: {who} ...", flush=True)
                if who == "plain":
                    got[who] = plain_locust(url, args, args.seconds, work / f"plain-{rnd}")
                else:
                    rps, count, share = through_drainwatch(url, db.dsn, args, work, f"drainwatch-{rnd}")
                    got[who] = (rps, count)
                    cpu_shares.append(share)
            rounds.append(got)

    banner(f"harness overhead: steady traffic, {args.users} users, {args.seconds:g}s load per run")
    rows, ratios = [], []
    for rnd, got in enumerate(rounds):
        ratios.append(got["drainwatch"][0] / got["plain"][0])
        first = "drainwatch" if rnd % 2 == 0 else "plain"
        rows.append(
            [
                f"round {rnd + 1} ({first} first)",
                f"{got['plain'][0]:.1f} ({got['plain'][1]})",
                f"{got['drainwatch'][0]:.1f} ({got['drainwatch'][1]})",
                f"{ratios[-1]:.3f}",
            ]
        )
    plain = statistics.mean(g["plain"][0] for g in rounds)
    harness = statistics.mean(g["drainwatch"][0] for g in rounds)
    rows.append(["mean", f"{plain:.1f}", f"{harness:.1f}", f"{harness / plain:.3f}"])
    print(table(["run", "plain locust req/s (requests)", "drainwatch req/s (requests)", "ratio"], rows))
    # The same comparison with no harness at all (plain vs the plain run of the next round):
    # how far apart two identical runs land on this machine right now.
    plains = [g["plain"][0] for g in rounds]
    noise = [abs(b / a - 1) for a, b in itertools.pairwise(plains)]
    ratio, median = harness / plain, statistics.median(ratios)
    mark = verdict_mark(ratio >= 0.95)
    if ratio < 0.95 and noise and 1 - ratio < max(noise):
        mark += " (within the noise below: inconclusive)"
    print(
        f"ratio drainwatch / plain: {ratio:.3f} of the means ({median:.3f} median of rounds, range "
        f"{min(ratios):.3f}..{max(ratios):.3f}); target >= 0.95: {mark}"
    )
    if noise:
        print(
            f"noise: successive plain runs differ by {statistics.mean(noise) * 100:.1f} % on average "
            f"(up to {max(noise) * 100:.1f} %); a ratio is only telling where its gap to 1 exceeds that"
        )
    share = statistics.mean(cpu_shares)
    cores = os.cpu_count() or 1
    print(
        f"drainwatch's own processes during the load phase: {share * 100:.1f} % of a core (mean of {len(cpu_shares)} "
        f"runs); on a saturated {cores}-core machine that takes roughly {share / cores * 100:.1f} % of throughput, "
        f"i.e. a ratio of ~{1 - share / cores:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
