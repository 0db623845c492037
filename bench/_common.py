"""What every benchmark in bench/ needs: real processes, a table, percentiles.

Not a library: small helpers so each bench script stays about its own figures.
Every process a helper starts is stopped by the helper (context managers), by its pid.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from drainwatch.provision.postgres import Database, embedded_postgres_sync
from drainwatch.provision.processes import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Context for the collector's figures: what a production monitor samples at.
MONITORS = (
    "context: common monitors sample far less often: Prometheus scrapes every 1 min by default "
    "(15 s in its sample config), the Datadog Agent runs its checks every 15 s; a pool drained "
    "and refilled between two scrapes never shows there."
)


def command(name: str) -> list[str]:
    """The console script installed beside this interpreter (what a user types), else ``-m``."""
    script = BIN / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", name]


def collect_argv(out: Path, interval: float, duration: float, app_name: str) -> list[str]:
    """`drainwatch collect` as the harness starts it: every ``interval`` seconds for ``duration``."""
    return [
        *command("drainwatch"),
        "collect",
        "--out",
        str(out),
        "--interval",
        f"{interval * 1000:g}ms",
        "--duration",
        f"{duration:g}s",
        "--app-name",
        app_name,
    ]


# ---------------------------------------------------------------- processes


def embedded_pg(log_path: Path) -> AbstractContextManager[Database]:
    """The embedded PostgreSQL, held open from synchronous code."""
    return embedded_postgres_sync(log_path)


def postgres_cpu(postmaster_pid: int) -> float:
    """CPU seconds (user + system) of the postmaster and every backend alive now."""
    total = 0.0
    try:
        master = psutil.Process(postmaster_pid)
        procs = [master, *master.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of one process, 0 once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def stop(proc: subprocess.Popen[Any], grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``grace``: only this one process, by its pid."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def demo_service(variant: str, dsn: str, log_path: Path) -> Iterator[str]:
    """``drainwatch demo-service`` on a free port, as a user would start it; yields its URL."""
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*command("drainwatch"), "demo-service", "--variant", variant, "--port", str(port), "--dsn", dsn],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"demo service exited: {log_path.read_text()[-500:]}")
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("demo service did not start in 30 s") from None
                time.sleep(0.1)
        yield url
    finally:
        stop(proc)


@dataclass
class RunResult:
    """One ``drainwatch run``: exit code, wall seconds seen from outside, its folder."""

    code: int
    wall: float
    spawned: float  # unix time just before the process was started
    exited: float  # unix time just after it ended
    run_dir: Path

    def run_json(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "run.json").read_text())

    def summary(self) -> dict[str, Any]:
        path = self.run_dir / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}


def drainwatch_run(
    args: Sequence[str],
    out: Path,
    run_id: str,
    timeout: float = 600,
    watch: Callable[[subprocess.Popen[bytes], Path], None] | None = None,
) -> RunResult:
    """Run ``drainwatch run ARGS --out OUT --run-id RUN_ID -q`` to its end, from the repo root.

    ``watch(proc, run_dir)``, if given, is called about every 0.1 s while it runs.
    """
    argv = [*command("drainwatch"), "run", *args, "--out", str(out), "--run-id", run_id, "-q"]
    log = out / f"{run_id}.stdout"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        spawned, started = time.time(), time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:  # returns as soon as it exits, so the wall time is exact
                code = proc.wait(0.1 if watch else timeout)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    proc.send_signal(2)  # SIGINT: drainwatch unwinds and writes what it has
                    code = proc.wait(60)
                    break
                if watch is not None:
                    watch(proc, out / run_id)
        wall = time.perf_counter() - started
    return RunResult(code=code, wall=wall, spawned=spawned, exited=spawned + wall, run_dir=out / run_id)


def scratch(prefix: str, keep: bool) -> Path:
    """A fresh folder under /tmp (the run folders are large); removed at exit unless ``keep``."""
    import atexit
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"drainwatch-bench-{prefix}-"))
    if not keep:
        atexit.register(shutil.rmtree, path, True)
    return path


# ---------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def aggregated_rps(stats_csv: Path) -> tuple[float, int]:
    """(Requests/s, Request Count) of Locust's Aggregated row."""
    for row in read_csv(stats_csv):
        if row["Name"] == "Aggregated":
            return float(row["Requests/s"]), int(row["Request Count"])
    raise ValueError(f"no Aggregated row in {stats_csv}")


# ---------------------------------------------------------------- output


def verdict_mark(ok: bool | None) -> str:
    return {True: "ok", False: "MISS", None: "-"}[ok]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table (first column left, the rest right)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def banner(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def env_note() -> str:
    load1, load5, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load1:.2f} (1 min) {load5:.2f} (5 min) at start"
