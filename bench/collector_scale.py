"""Collector at scale: `drainwatch collect` against a PostgreSQL crowded with other clients' backends.

    python bench/collector_scale.py [--seconds 15] [--sizes 30,300,1000] [--rates 4,20] [--targets 10]
                                    [--other-names 1]

One embedded PostgreSQL, max_connections = the largest size + --targets + 90. This script
opens the crowd itself, over TCP, one psycopg connection per backend: N "other" client
backends (application_name bench-other) and --targets backends of the target
(bench-target, what the collector is told to select with --app-name), each set in the
same mix: 80 % idle, 10 % active (a loop of `SELECT pg_sleep(1)`: its state flips to idle
and back once a second), 10 % idle in transaction. --other-names K spreads the others
over K application_names (services that name each worker). The sizes run smallest
first; the crowd grows between them (its connections are kept).

At each size and each rate, `drainwatch collect` runs as a subprocess, exactly as the
harness runs it, for --seconds + 2 s:

    missed samples     expected slots minus rows written (gap rows count as missed)
    lateness p99       late_ms of the samples taken inside the measuring window
    collector CPU      the collector process (psutil), share of one core
    its backend's CPU  the collector's own PostgreSQL backend (its pid from pg_stat_activity):
                       share of one core, and per sample (us): what one sampling query costs

Each figure is also given as a ratio to the smallest size at the same rate, and the
rows the collector wrote are checked: it must count exactly the target's backends.

Then, per size, where the backend's time goes: the backend CPU per execution of the
collector's query (imported from drainwatch.sample.collector, so it is the installed
one), of the bare `SELECT count(*) FROM pg_stat_activity` (the floor: any query reading
the view builds a row per backend), and of a candidate that groups only the target's
rows server-side and merely counts the rest; prepared, back to back, from this
script's own connection for 1 s each.
Target (DESIGN.md, issue #15), at the largest size and 20 Hz: 0 missed samples, p99
lateness < 20 ms, collector < 5 % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _common import (
    banner,
    collect_argv,
    cpu_seconds,
    env_note,
    percentile,
    read_csv,
    scratch,
    stop,
    table,
    verdict_mark,
)

from drainwatch.plan import Match
from drainwatch.provision.postgres import HARNESS_APP_NAME, embedded_postgres
from drainwatch.sample.collector import sample_sql
from drainwatch.sample.selector import COLLECTOR_APP_NAME, match_clause

TARGET_APP = "bench-target"
OTHER_APP = "bench-other"
MIX = (("active", 0.10), ("iit", 0.10))  # the rest idle
SLEEP_S = 1.0  # each active backend's pg_sleep
HEADROOM = 90  # max_connections beyond the crowd: the collector, this script, superuser_reserved
TAIL_S = 2.0  # the collector runs this much longer than the measuring window
OPEN_AT_ONCE = 16  # connections opened concurrently (each forks a backend)
TARGET_CPU = 0.05  # of a core
TARGET_P99_MS = 20.0
QUERY_S = 1.0  # each query shape runs this long per size, back to back, from this script's connection
SCAN = "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"


def query_shapes() -> dict[str, tuple[str, dict[str, Any]]]:
    """The collector's own query, and two references for what its cost is made of."""
    match = Match(application_name=TARGET_APP)
    where, params = match_clause(match)
    return {
        # what `drainwatch collect` runs (imported: the installed collector's query)
        "collector's query": sample_sql(match),
        # the floor: every query that reads pg_stat_activity builds all its rows
        "pg_stat_activity alone": (f"SELECT count(*) {SCAN}", {}),
        # a candidate: only the target's rows grouped, the rest only counted
        "target's rows only": (
            f"""WITH a AS MATERIALIZED (SELECT ({where}) AS mine, state, state_change, application_name {SCAN})
            SELECT true AS mine, coalesce(state, '') AS state, count(*) AS n,
                   coalesce(extract(epoch FROM max(now() - state_change)), 0)::float8 AS oldest,
                   coalesce(application_name, '') AS application_name
            FROM a WHERE mine GROUP BY 2, 5
            UNION ALL SELECT false, '', count(*), 0, '' FROM a WHERE mine IS NOT TRUE""",
            params,
        ),
    }


@dataclass
class Result:
    """One collector run: one size, one rate."""

    size: int
    rate: float
    expected: int = 0
    rows: int = 0
    gaps: int = 0
    late_ms: list[float] = field(default_factory=list)
    collector_cpu: float = 0.0  # share of one core
    backend_cpu: float = 0.0  # share of one core
    samples_in_window: int = 0
    seen_total: tuple[int, int] = (0, 0)  # min, max of the target's count
    seen_all: tuple[int, int] = (0, 0)  # min, max of all_client_backends

    @property
    def missed(self) -> int:
        return self.expected - (self.rows - self.gaps)

    @property
    def p99(self) -> float:
        return percentile(self.late_ms, 99)

    @property
    def backend_us(self) -> float:
        """Backend CPU per sample, microseconds."""
        return self.backend_cpu / self.rate * 1e6 if self.rate else math.nan


def split(n: int) -> dict[str, int]:
    """How many of ``n`` backends are active, idle in transaction, idle."""
    counts = {kind: round(n * share) for kind, share in MIX}
    counts["idle"] = n - sum(counts.values())
    return counts


class Crowd:
    """Client backends held open by this process: idle, active (pg_sleep loops), idle in transaction."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conns: list[psycopg.AsyncConnection[Any]] = []
        self.loops: list[asyncio.Task[None]] = []
        self.have: dict[tuple[str, str], int] = {}
        self.opened = 0

    async def grow(self, app: str, n: int, names: int = 1) -> None:
        """Open connections until ``app`` has ``n`` backends in the mix, spread over ``names``
        application_names (``app``, or ``app-0`` .. ``app-{names-1}``)."""
        gate = asyncio.Semaphore(OPEN_AT_ONCE)

        async def one(kind: str, name: str) -> None:
            async with gate:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, application_name=name, autocommit=kind != "iit", connect_timeout=30
                )
            self.conns.append(conn)
            if kind == "iit":
                await conn.execute("SELECT 1")  # no autocommit: the transaction stays open
            elif kind == "active":
                self.loops.append(asyncio.create_task(self._sleeper(conn)))

        jobs = []
        for kind, want in split(n).items():
            for _ in range(want - self.have.get((app, kind), 0)):
                name = app if names <= 1 else f"{app}-{self.opened % names}"
                self.opened += 1
                jobs.append(one(kind, name))
            self.have[(app, kind)] = max(want, self.have.get((app, kind), 0))
        await asyncio.gather(*jobs)

    @staticmethod
    async def _sleeper(conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            await conn.execute("SELECT pg_sleep(%s)", [SLEEP_S])

    async def aclose(self) -> None:
        for task in self.loops:
            task.cancel()
        await asyncio.gather(*self.loops, return_exceptions=True)
        await asyncio.gather(*(conn.close() for conn in self.conns), return_exceptions=True)


class Bench:
    def __init__(self, dsn: str, admin: psycopg.AsyncConnection[Any], work: Path) -> None:
        self.dsn, self.admin, self.work = dsn, admin, work

    async def query_cost(self, seconds: float) -> dict[str, float]:
        """Backend CPU per execution (us) of each query shape, prepared, run back to back."""
        cur = await self.admin.execute("SELECT pg_backend_pid()")
        pid = int(((await cur.fetchone()) or (0,))[0])
        cost = {}
        for name, (sql, params) in query_shapes().items():
            for _ in range(10):  # prepared from the first: psycopg's own threshold is 5
                await (await self.admin.execute(sql, params, prepare=True)).fetchall()
            n, cpu0, end = 0, cpu_seconds(pid), time.monotonic() + seconds
            while time.monotonic() < end:
                await (await self.admin.execute(sql, params, prepare=True)).fetchall()
                n += 1
            cost[name] = (cpu_seconds(pid) - cpu0) / n * 1e6
        return cost

    async def backend_of_collector(self, deadline: float) -> int:
        while True:
            cur = await self.admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [COLLECTOR_APP_NAME]
            )
            pids = [int(r[0]) for r in await cur.fetchall()]
            if len(pids) == 1:
                return pids[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"expected one collector backend in pg_stat_activity, found {pids}")
            await asyncio.sleep(0.05)

    async def run(self, size: int, rate: float, seconds: float) -> Result:
        interval = 1 / rate
        res = Result(size, rate)
        name = f"{size}-{rate:g}hz"
        out, log_path = self.work / f"samples-{name}.csv", self.work / f"collector-{name}.log"
        duration = seconds + TAIL_S
        res.expected = round(duration / interval)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                collect_argv(out, interval, duration, TARGET_APP),
                env={**os.environ, "DRAINWATCH_DSN": self.dsn},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 30
            while not (out.exists() and out.read_text().count("\n") > 1):  # a header and one sample
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"collector did not start: {log_path.read_text()[-500:]}")
                await asyncio.sleep(0.02)
            backend = await self.backend_of_collector(deadline)
            t0, w0 = time.monotonic(), time.time()
            c0, b0 = cpu_seconds(proc.pid), cpu_seconds(backend)
            await asyncio.sleep(seconds)
            elapsed = time.monotonic() - t0
            res.collector_cpu = (cpu_seconds(proc.pid) - c0) / elapsed
            res.backend_cpu = (cpu_seconds(backend) - b0) / elapsed
            w1 = time.time()
            while proc.poll() is None:
                if time.monotonic() > deadline + duration:
                    raise RuntimeError("collector did not stop at the end of --duration")
                await asyncio.sleep(0.05)
        finally:
            stop(proc)
        rows = read_csv(out)
        res.rows, res.gaps = len(rows), sum(r["gap"] == "1" for r in rows)
        inside = [r for r in rows if w0 <= float(r["t"]) <= w1 and r["gap"] == "0"]
        res.samples_in_window = len(inside)
        res.late_ms = [float(r["late_ms"]) for r in inside]
        totals, alls = [int(r["total"]) for r in inside], [int(r["all_client_backends"]) for r in inside]
        res.seen_total = (min(totals, default=0), max(totals, default=0))
        res.seen_all = (min(alls, default=0), max(alls, default=0))
        return res


def ratio(value: float, ref: float) -> str:
    if ref == 0 or math.isnan(ref) or math.isnan(value):
        return "-" if value == ref else "n/a"
    return f"{value / ref:.2f}x"


def rows_for(results: list[Result]) -> list[list[str]]:
    out = []
    for rate in sorted({r.rate for r in results}):
        at = [r for r in results if r.rate == rate]
        ref = min(at, key=lambda r: r.size)
        for r in at:
            out.append(
                [
                    f"{rate:g} Hz, {r.size:,} others",
                    f"{r.missed} of {r.expected}",
                    f"{percentile(r.late_ms, 50):.2f} / {r.p99:.2f} ({ratio(r.p99, ref.p99)})",
                    f"{r.collector_cpu * 100:.2f} % ({ratio(r.collector_cpu, ref.collector_cpu)})",
                    f"{r.backend_cpu * 100:.2f} % ({ratio(r.backend_cpu, ref.backend_cpu)})",
                    f"{r.backend_us:,.0f} ({ratio(r.backend_us, ref.backend_us)})",
                    f"{r.seen_total[0]}..{r.seen_total[1]} of {r.seen_all[1]:,}",
                ]
            )
    return out


def check_counts(results: list[Result], targets: int) -> list[str]:
    """The collector must count exactly the target's backends, and see the whole crowd."""
    problems = []
    for r in results:
        if r.seen_total != (targets, targets):
            problems.append(f"{r.rate:g} Hz, {r.size}: target counted {r.seen_total}, expected {targets}")
        # the crowd, the target's, this script's admin connection (the collector excludes its own)
        if r.seen_all[0] < r.size + targets:
            problems.append(
                f"{r.rate:g} Hz, {r.size}: all_client_backends {r.seen_all}, expected >= {r.size + targets}"
            )
    return problems


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f"need {need} open files for the crowd's sockets, the hard limit is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


async def bench(args: argparse.Namespace, work: Path) -> tuple[list[Result], dict[int, dict[str, float]]]:
    biggest = max(args.sizes)
    max_connections = biggest + args.targets + HEADROOM
    raise_fd_limit(biggest + args.targets + 256)
    results: list[Result] = []
    costs: dict[int, dict[str, float]] = {}
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(embedded_postgres(work / "postgres.log", max_connections=max_connections))
        admin = await stack.enter_async_context(
            await psycopg.AsyncConnection.connect(db.dsn, autocommit=True, application_name=HARNESS_APP_NAME)
        )
        cur = await admin.execute(
            "SELECT current_setting('shared_memory_size'), current_setting('server_version'),"
            " current_setting('shared_memory_type'), current_setting('dynamic_shared_memory_type')"
        )
        shm, version, shm_type, dsm_type = (await cur.fetchone()) or ("?", "?", "?", "?")
        print(
            f"  PostgreSQL {version}, max_connections {db.max_connections}: shared memory {shm} ({shm_type}, "
            f"dynamic {dsm_type})",
            flush=True,
        )
        crowd = Crowd(db.dsn)
        stack.push_async_callback(crowd.aclose)
        await crowd.grow(TARGET_APP, args.targets)
        b = Bench(db.dsn, admin, work)
        for size in sorted(args.sizes):
            t = time.monotonic()
            await crowd.grow(OTHER_APP, size, args.other_names)
            print(f"  {size:,} others open ({split(size)}) in {time.monotonic() - t:.1f} s", flush=True)
            await asyncio.sleep(1.0)  # let the new backends settle
            for rate in args.rates:
                r = await b.run(size, rate, args.seconds)
                results.append(r)
                print(
                    f"    {rate:g} Hz: {r.missed} missed, p99 {r.p99:.2f} ms, collector {r.collector_cpu * 100:.2f} %, "
                    f"its backend {r.backend_cpu * 100:.2f} % ({r.backend_us:,.0f} us/sample)",
                    flush=True,
                )
            costs[size] = await b.query_cost(QUERY_S)
            print("    query cost: " + ", ".join(f"{k} {v:,.0f} us" for k, v in costs[size].items()), flush=True)
    return results, costs


def numbers(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15, help="measuring window of each collector run (default 15)")
    parser.add_argument(
        "--sizes", type=lambda s: numbers(s, int), default=[30, 300, 1000], help="other backends (default 30,300,1000)"
    )
    parser.add_argument("--rates", type=lambda s: numbers(s, float), default=[4.0, 20.0], help="Hz (default 4,20)")
    parser.add_argument("--targets", type=int, default=10, help="the target's backends (default 10)")
    parser.add_argument(
        "--other-names",
        type=int,
        default=1,
        metavar="K",
        help="spread the other backends over K application_names (default 1; many services name each worker)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (samples CSVs, logs)")
    args = parser.parse_args(argv)
    if args.seconds < 3 or not args.sizes or not args.rates or min(args.sizes) < 1 or args.targets < 1:
        parser.error("need --seconds >= 3, at least one size and one rate, sizes and --targets >= 1")
    if not all(0.05 <= 1 / r <= 60 for r in args.rates):
        parser.error("rates must be between 1/60 and 20 Hz (the collector's --interval is 50ms..60s)")

    work = scratch("collector-scale", args.keep)
    runs = len(args.sizes) * len(args.rates)
    print(
        f"collector at scale: {runs} x {args.seconds:g}s, sizes {args.sizes}, rates {args.rates} Hz, "
        f"{args.targets} target backends, others under {args.other_names} application_name(s); {env_note()}; "
        f"scratch {work}",
        flush=True,
    )
    try:
        results, costs = asyncio.run(bench(args, work))
    except KeyboardInterrupt:
        print("interrupted: the collector, the crowd and PostgreSQL are stopped", file=sys.stderr)
        return 130

    banner(f"the collector among other backends, {args.seconds:g}s each (ratios: to the smallest size, same rate)")
    print(
        table(
            [
                "rate, other backends",
                "missed",
                "late_ms p50 / p99",
                "collector CPU",
                "its backend's CPU",
                "backend us/sample",
                "target counted",
            ],
            rows_for(results),
        )
    )
    banner("where its backend's time goes: CPU per execution (us), prepared, from this script's connection")
    shapes = list(query_shapes())
    ref = costs[min(costs)]
    own, floor, candidate = shapes
    print(
        table(
            ["other backends", *shapes, "collector's / floor", "candidate / collector's"],
            [
                [
                    f"{size:,}",
                    *(f"{c[k]:,.0f} ({ratio(c[k], ref[k])})" for k in shapes),
                    ratio(c[own], c[floor]),
                    ratio(c[candidate], c[own]),
                ]
                for size, c in sorted(costs.items())
            ],
        )
    )
    print(
        "(ratios in brackets: to the smallest size; the floor is pg_stat_activity itself, which any query "
        "reading it pays; psycopg prepares the collector's query itself after 5 executions)"
    )
    problems = check_counts(results, args.targets)
    print(
        "counts: " + ("; ".join(problems) if problems else f"every sample counted the {args.targets} target backends")
    )

    top = [r for r in results if r.size == max(args.sizes) and r.rate == max(args.rates)]
    if top:
        r = top[0]
        print(
            table(
                ["target", "measured", "goal", ""],
                [
                    [
                        f"{r.rate:g} Hz at {r.size:,}: missed",
                        f"{r.missed} of {r.expected}",
                        "0",
                        verdict_mark(r.missed <= 0),
                    ],
                    [
                        f"{r.rate:g} Hz at {r.size:,}: late_ms p99",
                        f"{r.p99:.2f} ms",
                        f"< {TARGET_P99_MS:g} ms",
                        verdict_mark(r.p99 < TARGET_P99_MS),
                    ],
                    [
                        f"{r.rate:g} Hz at {r.size:,}: collector CPU",
                        f"{r.collector_cpu * 100:.2f} % of a core",
                        f"< {TARGET_CPU * 100:g} %",
                        verdict_mark(r.collector_cpu < TARGET_CPU),
                    ],
                ],
            )
        )
        ok = r.missed <= 0 and r.p99 < TARGET_P99_MS and r.collector_cpu < TARGET_CPU
        print(f"target at {r.rate:g} Hz, {r.size:,} other backends: {'PASS' if ok else 'MISS'}")
        if r.rate < 20 or r.size < 1000:
            print("(the issue's target is 20 Hz at 1,000 other backends; this invocation ran less)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
