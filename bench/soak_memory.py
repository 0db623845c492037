"""A compressed soak: does memory grow with time? (it must not: 8-hour runs are a use case)

Runs `drainwatch run` on the fixed demo with the collector at 20 Hz (five times the default)
for a few minutes, and samples the resident memory of the orchestrator (`drainwatch run`)
and of the collector sidecar every few seconds. Prints memory at the start and end of the
load, the growth per 10,000 samples, and what that growth would be over an 8-hour soak at
the default 4 Hz (115,200 samples). Ratios, not absolute times: the machine is shared.

    python bench/soak_memory.py [--minutes 4] [--interval 50ms]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

EIGHT_HOURS_AT_4HZ = 8 * 3600 * 4


def rss_mb(pid: int | None) -> float | None:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20 if pid else None
    except psutil.NoSuchProcess:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--interval", default="50ms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drainwatch-bench-soak-") as tmp:
        out = Path(tmp)
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drainwatch",
                "run",
                "--variant",
                "fixed",
                "--users",
                "10",
                "--interval",
                args.interval,
                "--warmup",
                "3s",
                "--baseline",
                "2s",
                "--duration",
                f"{args.minutes * 60:.0f}s",
                "--settle",
                "5s",
                "--out",
                str(out),
                "--run-id",
                "soak",
                "-q",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        readings: list[tuple[float, int, float | None, float | None]] = []  # (t, samples, orchestrator, collector)
        run_json, samples_csv = out / "soak" / "run.json", out / "soak" / "samples.csv"
        while run.poll() is None:
            time.sleep(5)
            try:
                record = json.loads(run_json.read_text())
            except (OSError, ValueError):
                continue
            if record.get("current_phase") != "load":
                continue
            with open(samples_csv, "rb") as handle:
                n = sum(1 for _ in handle) - 1
            readings.append((time.time(), n, rss_mb(run.pid), rss_mb(record["processes"].get("collector"))))
        summary = json.loads((out / "soak" / "summary.json").read_text())
    if len(readings) < 4:
        sys.exit("too few readings: give --minutes 2 or more")
    # Skip the first readings: imports, Locust start-up and the first pool fills settle there.
    first, last = readings[2], readings[-1]
    samples = last[1] - first[1]
    print(
        f"compressed soak: {args.minutes:g} min at {args.interval} → {last[1]:,} samples; verdict {summary['verdict']}"
    )
    print(
        f"{'process':<14}{'RSS at start MB':>17}{'RSS at end MB':>15}{'end/start':>11}{'MB per 10k samples':>20}{'8 h at 4 Hz, MB':>17}"
    )
    for index, name in ((2, "orchestrator"), (3, "collector")):
        start, end = first[index], last[index]
        if start is None or end is None:
            print(f"{name:<14} (process not found)")
            continue
        per_10k = (end - start) / samples * 10_000 if samples else 0.0
        print(
            f"{name:<14}{start:>17.1f}{end:>15.1f}{end / start:>11.3f}{per_10k:>20.2f}{per_10k * EIGHT_HOURS_AT_4HZ / 10_000:>17.1f}"
        )
    print("target: no growth with time (end/start ≈ 1.00; growth per 10k samples within noise)")


if __name__ == "__main__":
    main()
