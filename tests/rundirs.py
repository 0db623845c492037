"""A synthetic run directory, shaped like the real thing, for report tests and the report bench.

    make_rundir(path, hours=24, hz=1)                     # a 24 h soak sampled at 1 Hz
    python tests/rundirs.py OUT_DIR --hours 24 --hz 1 [--verdict LEAK] [--render]

The files follow drainwatch.rundir and Locust 2.x's ``--csv --csv-full-history`` output; the
summary is produced by the real ``drainwatch.judge.verdict.judge`` from the synthetic samples, so it
cannot drift from what a real run would write. Everything is vectorised with numpy: the
24 h soak is about half a million Locust history rows.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drainwatch.judge.forensics import classify
from drainwatch.judge.probe import ProbeResult
from drainwatch.judge.verdict import Evidence, judge
from drainwatch.report.outputs import summary
from drainwatch.rundir import (
    LINGERING_COLUMNS,
    LINGERING_CSV,
    LOCUST_PREFIX,
    PROBE_CSV,
    RUN_JSON,
    SAMPLES_CSV,
    SUMMARY_JSON,
    WARMUP_PREFIX,
    write_json,
)
from drainwatch.sample.collector import Sample

T0 = 1_760_000_000.0  # a fixed start keeps generated files reproducible
POOL_LIMIT, MAX_CONNECTIONS, BASELINE_IDLE, USERS = 30, 100, 10, 40
# (scenario, method, path, weight, median ms, failure ratio)
REQUESTS = [
    ("steady", "GET", "/items", 4, 12, 0.0),
    ("disconnect", "POST", "/chat", 2, 180, 0.02),
    ("timeout", "GET", "/report", 2, 900, 0.35),
    ("error", "POST", "/orders", 1, 25, 1.0),
]
PERCENTILES = ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
STATS_HEADER = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    *PERCENTILES,
]
HISTORY_HEADER = [
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    *PERCENTILES,
    "Total Request Count",
    "Total Failure Count",
    "Total Median Response Time",
    "Total Average Response Time",
    "Total Min Response Time",
    "Total Max Response Time",
    "Total Average Content Size",
]
SPREAD = np.array([1.0, 1.2, 1.35, 1.45, 1.8, 2.3, 3.0, 3.6, 5.0, 6.0, 7.0])
RENDER = """
import re, sys
from pathlib import Path
from drainwatch.report import render_report
render_report(Path(sys.argv[1]))
status = Path("/proc/self/status")
found = re.search(r"VmHWM:\\s+(\\d+)", status.read_text()) if status.exists() else None
print(f"peak RSS {int(found.group(1)) / 1024:.0f} MB" if found else "peak RSS unknown (no /proc)")
"""
RESET_SQL = "ROLLBACK"  # SQLAlchemy's reset-on-return, as the demo service's engine leaves it


def make_rundir(
    path: Path | str, hours: float, hz: float, verdict: str = "LEAK", *, status: str = "completed", seed: int = 0
) -> Path:
    """Write a run directory at ``path`` and return it.

    ``verdict`` (PASS, LEAK, ERROR) picks the story the data tells. ``status="interrupted"``
    stops the run half-way through the load, as Ctrl-C would: no settle, probe or lingering
    snapshot, and a summary without a verdict.
    """
    if verdict not in ("PASS", "LEAK", "ERROR"):
        raise ValueError(f"verdict must be PASS, LEAK or ERROR, not {verdict!r}")
    run_dir = Path(path)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total_s = hours * 3600.0
    settle_s = min(120.0, max(20.0, total_s * 0.05))
    load_s = total_s - 17.0 - settle_s - 3.0
    if load_s < 5:
        raise ValueError(f"{hours} h is too short for a run: give at least {(25 + settle_s) / 3600:.4f} h")
    edges = [float(e) for e in np.cumsum([T0, 2.0, 10.0, 5.0, load_s, settle_s, 3.0])]
    names = ["provision", "warmup", "baseline", "load", "settle", "probe"]
    phases: dict[str, list[float | None]] = {n: [edges[i], edges[i + 1]] for i, n in enumerate(names)}
    interrupted = status != "completed"
    end = edges[3] + load_s / 2 if interrupted else edges[6]
    if interrupted:
        phases = {n: span for n, span in phases.items() if edges[names.index(n)] < end}
        phases["load"][1] = None

    samples = _samples(rng, edges, end, hz, verdict)[Sample.columns()]
    samples.round(3).to_csv(run_dir / SAMPLES_CSV, index=False)  # float_format would take seconds
    _write_locust(run_dir, WARMUP_PREFIX, rng, edges[1], edges[2], steady_only=True)
    _write_locust(run_dir, LOCUST_PREFIX, rng, edges[3], min(edges[4], end), steady_only=False)
    record = _run_json(run_dir.name, status, phases, load_s, finished=end)
    write_json(run_dir / RUN_JSON, record)
    extra = {"pool_limit": POOL_LIMIT, "max_connections": MAX_CONNECTIONS}
    if interrupted:
        write_json(run_dir / SUMMARY_JSON, summary(record, None, extra))
        return run_dir

    lingering = _lingering(rng, verdict, end, age=edges[5] - edges[3])
    with open(run_dir / LINGERING_CSV, "w", newline="") as handle:
        lingering_writer = csv.DictWriter(handle, fieldnames=LINGERING_COLUMNS, extrasaction="ignore")
        lingering_writer.writeheader()
        lingering_writer.writerows(lingering)
    probe = ProbeResult(attempts=3, ok=0 if verdict == "ERROR" else 3, target_alive=verdict != "ERROR")
    refused = "connection refused ([Errno 111] Connection refused)"
    with open(run_dir / PROBE_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)  # the columns and values drainwatch.judge.probe writes
        writer.writerow(["t", "status", "ok", "elapsed_ms", "error"])
        for i in range(probe.attempts if probe.target_alive else 1):  # the probe stops at a dead target
            ok = i < probe.ok
            row = [f"{edges[5] + i:.3f}", "200" if ok else "", int(ok), f"{14.2 + i:.1f}", "" if ok else refused]
            writer.writerow(row)
    if verdict == "ERROR":
        probe.attempts, probe.detail = 1, refused

    spans = {n: (float(s or 0), float(e)) for n, (s, e) in phases.items() if e is not None}
    result = judge(Evidence(samples.to_dict("records"), spans, lingering, probe, tolerance=0))
    if result.outcome != verdict:
        raise AssertionError(f"synthetic data judged {result.outcome}, wanted {verdict}: {result.reasons}")
    write_json(run_dir / SUMMARY_JSON, summary(record, result, extra))
    return run_dir


def _samples(rng: np.random.Generator, edges: list[float], end: float, hz: float, verdict: str) -> pd.DataFrame:
    t = np.arange(edges[1], end, 1.0 / hz)
    n = len(t)
    warm, load, settle = (t >= edges[1]) & (t < edges[2]), (t >= edges[3]) & (t < edges[4]), t >= edges[4]
    # Leaks arrive one by one through the load, so a long soak shows a slow creep.
    leak_times = np.sort(rng.uniform(edges[3], min(edges[4], end), 5)) if verdict == "LEAK" else np.array([])
    held = np.searchsorted(leak_times[:3], t, side="right")
    iit_leaks = np.searchsorted(leak_times[3:], t, side="right")
    active = np.where(load, np.clip(rng.poisson(11, n), 0, 24), 0)
    active = np.where(warm, rng.poisson(3, n), active)
    # After the load the pool gives back its overflow over a few seconds.
    since_load = np.clip(t - edges[4], 0, None)
    overflow = np.where(settle, np.maximum(0, (POOL_LIMIT - BASELINE_IDLE) * np.exp(-since_load)), 0).astype(int)
    ramp = np.clip((t - edges[1]) / (edges[2] - edges[1]), 0, 1)
    pooled = np.where(warm, np.round(BASELINE_IDLE * ramp), BASELINE_IDLE).astype(int)
    transient_iit = np.where(load, rng.poisson(0.4, n), 0)
    total = np.minimum(POOL_LIMIT, np.maximum(pooled, active + transient_iit + 3) + held + iit_leaks + overflow)
    iit = np.minimum(total - active, iit_leaks + transient_iit)
    idle = total - active - iit
    if verdict == "ERROR":
        dead = t >= (edges[4] + edges[5]) / 2  # the target dies half-way through settle
        total, active, idle, iit = (np.where(dead, 0, a) for a in (total, active, idle, iit))
    frame = pd.DataFrame(
        {
            "t": t + rng.normal(0, 0.002, n),
            "total": total,
            "active": active,
            "idle": idle,
            "idle_in_transaction": iit,
            "idle_in_transaction_aborted": 0,
            "other": 0,
            "oldest_iit_s": np.where(iit > 0, rng.uniform(0, 2, n), 0.0),
            "oldest_idle_s": rng.uniform(0, 30, n),
            "oldest_active_s": np.where(active > 0, rng.uniform(0, 1, n), 0.0),
            "all_client_backends": total + 2,
            "max_connections": MAX_CONNECTIONS,
            "late_ms": np.abs(rng.normal(0, 1.5, n)),
            "gap": 0,
            "opened": 0,
        }
    )
    if iit_leaks.any():
        oldest = np.where(iit_leaks > 0, t - leak_times[3], 0.0)
        frame["oldest_iit_s"] = np.maximum(frame["oldest_iit_s"], oldest)
    # PostgreSQL restarts once mid-load: gap rows carry no reading, only a time.
    outage = (t >= edges[3] + (edges[4] - edges[3]) * 0.4) & (t < edges[3] + (edges[4] - edges[3]) * 0.4 + 8)
    readings = [c for c in frame.columns if c not in ("t", "late_ms", "gap")]
    frame.loc[outage, readings] = 0
    frame.loc[outage, "gap"] = 1
    return frame


def _write_locust(
    run_dir: Path, prefix: str, rng: np.random.Generator, start: float, end: float, *, steady_only: bool
) -> None:
    requests = REQUESTS[:1] if steady_only else REQUESTS
    names = [f"{scenario} {method} {path}" for scenario, method, path, *_ in requests]
    seconds = np.arange(int(start), int(end) + 1)
    k, m = len(seconds), len(requests)
    weights = np.array([r[3] for r in requests], dtype=float)
    med = np.array([r[4] for r in requests], dtype=float)
    users = np.minimum(USERS, (seconds - seconds[0] + 1) * 20)
    rps = users[:, None] * 2.5 * weights / weights.sum() * rng.uniform(0.85, 1.15, (k, m))
    fail = np.minimum(rps, rps * np.array([r[5] for r in requests]) * rng.uniform(0.7, 1.3, (k, m)))
    pct = med[None, :, None] * SPREAD * rng.uniform(0.8, 1.25, (k, m, 1))
    # The Aggregated row is one more "name" per timestamp, written after the others.
    rps, fail = np.column_stack([rps, rps.sum(1)]), np.column_stack([fail, fail.sum(1)])
    pct = np.concatenate([pct, pct.max(axis=1, keepdims=True)], axis=1).astype(int)
    med = np.append(med, np.median(med))
    counts, fails = np.cumsum(rps, axis=0).astype(int), np.cumsum(fail, axis=0).astype(int)
    types, names = [method for _, method, *_ in requests] + [""], names + ["Aggregated"]

    def flat(per_name: np.ndarray) -> list[Any]:
        return np.broadcast_to(per_name, (k, m + 1)).ravel().tolist()

    columns = [
        flat(seconds[:, None]),
        flat(users[:, None]),
        flat(np.array(types)),
        flat(np.array(names)),
        flat(np.round(rps, 6)),
        flat(np.round(fail, 6)),
        *(flat(pct[:, :, i]) for i in range(len(PERCENTILES))),
        flat(counts),
        flat(fails),
        flat(med.astype(int)),
        flat(np.round(med * 1.3, 3)),
        flat(np.full(m + 1, 2)),
        flat((med * 9).astype(int)),
        flat(np.full(m + 1, 512)),
    ]
    rows = list(zip(*columns))
    # Locust writes N/A percentiles until a name has answered once: the first second here.
    for i in range(m + 1):
        rows[i] = rows[i][:6] + ("N/A",) * len(PERCENTILES) + rows[i][6 + len(PERCENTILES) :]
    with open(run_dir / f"{prefix}_stats_history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_HEADER)
        writer.writerows(rows)

    span = max(1.0, end - start)
    with open(run_dir / f"{prefix}_stats.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(STATS_HEADER)
        for j in range(m + 1):
            n, f = int(counts[-1, j]), int(fails[-1, j])
            writer.writerow(
                [types[j], names[j], n, f, int(med[j]), med[j] * 1.3, 2, int(med[j] * 9), 512, n / span, f / span]
                + [int(v) for v in med[j] * SPREAD]
            )

    errors = {
        "error": "HTTPError('500 Server Error: Internal Server Error for url: http://127.0.0.1:8765/orders')",
        "timeout": "ReadTimeout('timed out')",
        "disconnect": "CatchResponseError('client hung up after 150 ms <by design>')",
    }
    with open(run_dir / f"{prefix}_failures.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Method", "Name", "Error", "Occurrences", "First Seen", "Last Seen"])
        for j, (scenario, method, *_) in enumerate(requests):
            if scenario in errors and fails[-1, j] >= 1:
                writer.writerow([method, names[j], errors[scenario], int(fails[-1, j]), "", ""])
    with open(run_dir / f"{prefix}_exceptions.csv", "w", newline="") as handle:
        csv.writer(handle).writerow(["Count", "Message", "Traceback", "Nodes"])


def _lingering(rng: np.random.Generator, verdict: str, now: float, *, age: float) -> list[dict[str, Any]]:
    """The connections left after settle; ``age`` is how long load and settle lasted."""
    raw: list[dict[str, Any]] = []
    if verdict == "ERROR":
        return raw  # the target died: its connections died with it
    for i in range(BASELINE_IDLE):
        raw.append(_conn(5000 + i, "idle", RESET_SQL, backend_age=now - T0 - 10, state_age=rng.uniform(5, 60)))
    if verdict == "LEAK":
        held = [("chat", "disconnect"), ("chat", "disconnect"), ("report", "timeout")]
        for i, (route, scenario) in enumerate(held):
            tag = f"/* drainwatch route={route} scenario={scenario} rid=r{i:04x} */"
            sql = f"{tag} SELECT id, body FROM messages WHERE chat_id = $1"
            raw.append(_conn(6000 + i, "idle", sql, backend_age=age * 0.9, state_age=age * (0.6 - i * 0.05)))
        for i in range(2):
            tag = f"/* drainwatch route=orders scenario=error rid=e{i:04x} */"
            sql = f"{tag} INSERT INTO orders (item, qty)\nVALUES ($1, $2)"  # a newline, as ORMs write them
            row = _conn(7000 + i, "idle in transaction", sql, backend_age=age * 0.8, state_age=age * (0.4 - i * 0.03))
            row["xact_age_s"] = row["state_age_s"] + 0.02
            raw.append(row)
    return classify(raw)


def _conn(pid: int, state: str, query: str, *, backend_age: float, state_age: float) -> dict[str, Any]:
    return {
        "pid": pid,
        "application_name": "drainwatch-demo",
        "state": state,
        "backend_age_s": round(backend_age, 3),
        "xact_age_s": None,
        "state_age_s": round(state_age, 3),
        "wait_event_type": "Client",
        "client_addr": "127.0.0.1",
        "query": query,
    }


def _run_json(
    run_id: str, status: str, phases: dict[str, list[float | None]], load_s: float, *, finished: float
) -> dict[str, Any]:
    """run.json as drainwatch.run.record.RunRecord leaves it."""
    dsn = "postgresql://postgres:***@127.0.0.1:54329/postgres"
    return {
        "run_id": run_id,
        "status": status,
        "error": None,
        "started": T0,
        "finished": finished,
        "current_phase": "load" if status != "completed" else None,
        "config": {
            "variant": "leaky",
            "dsn": None,
            "target_url": None,
            "match": {"application_name": None, "usename": None, "datname": None, "client_addr": None},
            "users": USERS,
            "spawn_rate": 20.0,
            "warmup": 10.0,
            "baseline": 5.0,
            "duration": load_s,
            "settle": 20.0,
            "interval": 0.25,
            "mix": {r[0]: r[3] for r in REQUESTS},
            "locustfile": None,
            "probe_path": "/health/db",
            "probe_count": 3,
            "probe_timeout": 5.0,
            "tolerance": 0,
            "out": "reports",
            "run_id": run_id,
            "quiet": False,
            "pool_limit": None,
        },
        "phases": phases,
        "versions": {
            "drainwatch": "0.1.0",
            "python": "3.11.2",
            "locust": "2.47.0",
            "fastapi": "0.165.0",
            "sqlalchemy": "2.1.9",
            "asyncpg": "0.32.0",
            "psycopg": "3.3.9",
            "postgresql": "18.0",
        },
        "target": {
            "url": "http://127.0.0.1:8765",
            "pid": 4242,
            "pool_limit": POOL_LIMIT,
            "match": {"application_name": "drainwatch-demo%", "usename": None, "datname": None, "client_addr": None},
        },
        "database": {"dsn": dsn, "embedded": True, "version": "18.0", "max_connections": MAX_CONNECTIONS},
        "processes": {"postgres": 4240, "target": 4242, "collector": 4243, "locust": 4250},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--hz", type=float, default=1.0)
    parser.add_argument("--verdict", default="LEAK", choices=["PASS", "LEAK", "ERROR"])
    parser.add_argument("--status", default="completed", choices=["completed", "interrupted"])
    parser.add_argument("--render", action="store_true", help="render report.html and print time and peak memory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    make_rundir(args.out, args.hours, args.hz, args.verdict, status=args.status)
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f}s")
    if args.render:
        # In a fresh process, so the peak is the report's alone (imports included): VmHWM
        # belongs to the process image, where ru_maxrss would carry over this one's from fork.
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", RENDER, str(args.out)], check=True, capture_output=True, text=True)
        print(f"rendered {args.out / 'report.html'} in {time.perf_counter() - started:.2f}s, {out.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
