"""Recording cost: requests/s of a service whose pool view records every checkout, against the same
service counting only.

    python bench/recording_cost.py [--seconds 10] [--rounds 3] [--connections 20]

Two copies of the fixed demo (one embedded PostgreSQL), the same code, one started with
``DRAINWATCH_RECORD_CHECKOUTS=0``. Both pool views are read once, which starts the recording in
the first copy only: from then on each checkout of its SQLAlchemy and asyncpg pools walks the
stack for the application's frames. ``GET /items`` takes one connection from each pool. wrk
drives each copy in turn, the order alternating between rounds; the figure is the median of
recorded / counting-only req/s. Target (issue "Forensics no other tool has"): at most 3 % slower,
a ratio >= 0.97.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import psutil
from _common import banner, cpu_seconds, demo_service, embedded_pg, env_note, scratch, table, verdict_mark
from capacity import ensure_wrk, wrk_rps

from drainwatch.instrument import POOL_VIEW_PATH, RECORD_ENV

TARGET = 0.97


@contextmanager
def environment(name: str, value: str | None) -> Iterator[None]:
    """``name`` set to ``value`` (or unset) for what starts inside the block: the demo inherits it."""
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="wrk run per copy and round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, order alternating (default 3)")
    parser.add_argument("--connections", type=int, default=20, help="wrk connections (default 20)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    if wrk is None:
        return 2
    work = scratch("recording", args.keep)
    print(f"recording cost: {args.rounds} rounds of {args.seconds:g}s; {env_note()}; scratch {work}", flush=True)
    with ExitStack() as stack:
        db = stack.enter_context(embedded_pg(work / "postgres.log"))
        urls = {}
        for name, value in (("recorded", None), ("counting only", "0")):
            with environment(RECORD_ENV, value):
                urls[name] = stack.enter_context(demo_service("fixed", db.dsn, work / f"{name}.log"))
        for url in urls.values():
            httpx.get(url + POOL_VIEW_PATH, timeout=5).raise_for_status()  # starts the recording where it is on
            wrk_rps(wrk, url, args.connections, 2)  # fill the pools
        pids = {name: listener(url) for name, url in urls.items()}
        rows, ratios, cpu_ratios = [], [], []
        for rnd in range(args.rounds):
            order = list(urls) if rnd % 2 == 0 else list(reversed(urls))
            rps, cpu = {}, {}
            for name in order:
                before = cpu_seconds(pids[name])
                rps[name] = wrk_rps(wrk, urls[name], args.connections, args.seconds)
                cpu[name] = (cpu_seconds(pids[name]) - before) / (rps[name] * args.seconds) * 1e6
            ratios.append(rps["recorded"] / rps["counting only"])
            cpu_ratios.append(cpu["counting only"] / cpu["recorded"])
            rows.append(
                [rnd + 1, " then ".join(order), f"{rps['recorded']:.0f}", f"{rps['counting only']:.0f}",
                 f"{ratios[-1]:.3f}", f"{cpu['recorded']:.0f}", f"{cpu['counting only']:.0f}", f"{cpu_ratios[-1]:.3f}"]
            )  # fmt: skip
    banner("Recording cost: GET /items, checkouts recorded vs counted only")
    print(table(["round", "order", "rec req/s", "count req/s", "ratio", "rec µs/req", "count µs/req", "ratio"], rows))
    median, cpu_median = statistics.median(ratios), statistics.median(cpu_ratios)
    print(f"\nmedian req/s ratio {median:.3f} (target >= {TARGET}) {verdict_mark(median >= TARGET)}")
    print(
        f"median CPU-per-request ratio {cpu_median:.3f} (counting only / recorded: the service's own CPU, "
        f"steadier than req/s on a shared machine) {verdict_mark(cpu_median >= TARGET)}"
    )
    return 0


def listener(url: str) -> int:
    """The pid of the process listening on ``url``'s port: the service whose CPU is counted."""
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise RuntimeError(f"nothing listens on port {port}")


if __name__ == "__main__":
    raise SystemExit(main())
