"""Zombie work: backends still busy for clients that have hung up, plain vs streaming endpoint.

Two runs of the fixed demo where the disconnect kind hits slow database work (pg_sleep):
once behind a plain endpoint (GET /work: a hang-up does not cancel the handler, the query
runs to the end) and once behind a streaming one (GET /work-stream: the hang-up cancels the
generator and asyncpg cancels the query). Prints the verdict's zombie figures: the most
backends still active after traffic stopped, and for how long.

    python bench/zombie.py [--work-ms 3000] [--users 10] [--duration 10s]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(endpoint: str, work_ms: int, users: int, duration: str, settle: str, out: Path) -> dict:
    env_updates = {
        "DRAINWATCH_DISCONNECT": f"GET {endpoint}?ms={work_ms}",
        "DRAINWATCH_DISCONNECT_AFTER_MS": "200",
    }
    name = endpoint.strip("/")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "drainwatch",
            "run",
            "--variant",
            "fixed",
            "--mix",
            "disconnect=1",
            "--users",
            str(users),
            "--warmup",
            "3s",
            "--baseline",
            "2s",
            "--duration",
            duration,
            "--settle",
            settle,
            "--out",
            str(out),
            "--run-id",
            name,
            "-q",
        ],
        env={**os.environ, **env_updates},
        check=False,
        capture_output=True,
    )
    return json.loads((out / name / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-ms", type=int, default=3000)
    # Few users and a short load: each hang-up leaves 3 s of work behind, and a plain endpoint
    # queues it all; the settle must be long enough to watch that backlog drain.
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--duration", default="5s")
    parser.add_argument("--settle", default="60s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drainwatch-bench-zombie-") as tmp:
        rows = []
        for endpoint in ("/work", "/work-stream"):
            summary = run(endpoint, args.work_ms, args.users, args.duration, args.settle, Path(tmp))
            zombie = summary.get("zombie") or {}
            rows.append((endpoint, summary.get("verdict"), zombie.get("peak_active", 0), zombie.get("lasted_s", 0.0)))
    print(
        f"zombie work after a disconnect storm ({args.users} users hanging up after 200 ms on {args.work_ms} ms of pg_sleep)"
    )
    print(f"{'endpoint':<14}{'verdict':<9}{'peak active after stop':>24}{'lasted (s)':>12}")
    for endpoint, verdict, peak, lasted in rows:
        print(f"{endpoint:<14}{verdict or '-':<9}{peak:>24}{lasted:>12.1f}")
    plain, stream = rows[0], rows[1]
    if stream[2] == 0:
        print(f"streaming: no zombie work; plain: up to {plain[2]} backends kept working {plain[3]:.1f}s for nobody")


if __name__ == "__main__":
    main()
