"""Report at scale: render a synthetic 24 h soak sampled at 1 Hz; wall time and peak memory.

    python bench/report_scale.py [--hours 24] [--hz 1] [--repeat 3]

The run folder comes from tests/rundirs.make_rundir (about 86,000 samples and half
a million Locust history rows for 24 h at 1 Hz). Each render runs in a fresh subprocess, as
`drainwatch report RUN_DIR` would: its wall time (interpreter start and imports included,
what a user waits for) and its peak RSS (VmHWM of the child's own address space).
The child also reports the time inside render_report() alone.

Reference, same invocation: a run folder the size of the default run (90 s at 4 Hz), so
the ratio shows what the 24 h of data costs over the fixed cost of a render.
Targets (DESIGN.md): under 5 s and under 400 MB. A compare of two 24 h runs is timed too
when the CLI has a `compare` command (drainwatch.report.compare); otherwise the table says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, banner, env_note, scratch, table, verdict_mark

# Prepended to every child: report the peak RSS of its own address space when it exits.
# VmHWM, not the rusage of the child: Linux carries the parent's peak RSS over fork+exec
# into the child's ru_maxrss, and this parent holds the generated 24 h of data.
PEAK_HOOK = """
import atexit, sys
def _peak():
    with open("/proc/self/status") as status:
        sys.stderr.write(next(line for line in status if line.startswith("VmHWM")))
atexit.register(_peak)
"""

# The render: time the imports and render_report() separately, print them as JSON.
RENDER = """
import json, time
t0 = time.perf_counter()
from pathlib import Path
from drainwatch.report import render_report
from drainwatch.report import figures, html, rundata  # what render_report imports lazily
t1 = time.perf_counter()
render_report(Path(sys.argv[1]))
t2 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "render": t2 - t1}))
"""

# `drainwatch compare A B`, through the CLI's own entry point.
COMPARE = """
from drainwatch.cli import main
sys.argv = ["drainwatch", "compare", *sys.argv[1:]]
main()
"""


def in_child(code: str, *args: str) -> tuple[float, float, str, int]:
    """Run ``code`` in a fresh interpreter; (wall seconds, peak RSS in MB, stdout, exit code)."""
    # stderr to a file, not a pipe: a chatty child cannot block on it.
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_HOOK + code, *args],
            check=False,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        wall = time.perf_counter() - started
        err.seek(0)
        errors = err.read().decode(errors="replace")
    peak = re.search(r"VmHWM:\s+(\d+) kB", errors)
    if proc.returncode not in (0, 1) or not peak:
        print(errors[-2000:], file=sys.stderr)
    return (
        wall,
        int(peak.group(1)) / 1024 if peak else float("nan"),
        proc.stdout.decode(),
        proc.returncode,
    )


def render(run_dir: Path) -> dict[str, float]:
    wall, rss, out, code = in_child(RENDER, str(run_dir))
    if code != 0:
        raise RuntimeError(f"render of {run_dir} failed (exit {code})")
    inner = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "rss": rss, "render": inner["render"], "imports": inner["imports"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24, help="length of the synthetic soak (default 24)")
    parser.add_argument("--hz", type=float, default=1, help="its sampling rate (default 1)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="renders of each folder; the median is shown (default 3)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the synthetic run folders")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.rundirs
    from tests.rundirs import make_rundir

    work = scratch("report", args.keep)
    print(
        f"report benchmark: {args.hours:g} h at {args.hz:g} Hz, {args.repeat} renders each; {env_note()}; "
        f"folders in {work}",
        flush=True,
    )
    started = time.perf_counter()
    soak = make_rundir(work / "soak", args.hours, args.hz, "LEAK")
    made = time.perf_counter() - started
    size = sum(p.stat().st_size for p in soak.rglob("*") if p.is_file()) / 1e6
    small = make_rundir(work / "default-size", 90 / 3600, 4, "LEAK")
    print(f"  generated the soak in {made:.1f} s ({size:.0f} MB on disk); rendering ...", flush=True)

    render(small)  # unmeasured: the first process pays for cold disk caches and .pyc files
    measured: dict[str, list[dict[str, float]]] = {"reference": [], "soak": []}
    for _ in range(args.repeat):  # interleaved, so drift on the machine hits both alike
        measured["reference"].append(render(small))
        measured["soak"].append(render(soak))
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in measured.items()}
    peak = {k: max(r["rss"] for r in v) for k, v in measured.items()}

    compare = ["compare of two soaks", "not measured: drainwatch.report.compare does not exist", "", "-"]
    if importlib.util.find_spec("drainwatch.report.compare") is not None:
        other = make_rundir(work / "soak-pass", args.hours, args.hz, "PASS", seed=1)
        wall, rss, _, code = in_child(COMPARE, str(soak), str(other))
        # No target of its own in DESIGN.md: held to the report's.
        compare = [
            f"compare of two soaks (`drainwatch compare`, exit {code})",
            f"{wall:.2f} s, {rss:.0f} MB",
            "< 5 s, < 400 MB",
            verdict_mark(wall < 5 and rss < 400),
        ]

    banner(
        f"report of a {args.hours:g} h soak at {args.hz:g} Hz (median of {args.repeat} renders, each a fresh process)"
    )
    s, r = med["soak"], med["reference"]
    rows = [
        ["render, wall (process start to exit)", f"{s['wall']:.2f} s", "< 5 s", verdict_mark(s["wall"] < 5)],
        ["  of which imports", f"{s['imports']:.2f} s", "", "-"],
        ["  of which render_report()", f"{s['render']:.2f} s", "", "-"],
        ["render, peak RSS", f"{peak['soak']:.0f} MB", "< 400 MB", verdict_mark(peak["soak"] < 400)],
        ["reference (90 s run at 4 Hz): wall", f"{r['wall']:.2f} s", "", "-"],
        ["reference: peak RSS", f"{peak['reference']:.0f} MB", "", "-"],
        ["ratio soak / reference: wall", f"{s['wall'] / r['wall']:.2f}", "", "-"],
        ["ratio soak / reference: render_report()", f"{s['render'] / r['render']:.2f}", "", "-"],
        ["ratio soak / reference: peak RSS", f"{peak['soak'] / peak['reference']:.2f}", "", "-"],
        compare,
    ]
    print(table(["figure", "measured", "target", ""], rows))
    html = soak / "report.html"
    print(f"report.html of the soak: {html.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
