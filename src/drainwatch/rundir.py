"""The run directory: the names of its files and how they are written.

Everything a report, a compare or a CI job needs is in here; nothing else is read later.

    run.json            config (no password), phases with unix start/end, versions, status
    samples.csv         the collector's time series (columns: drainwatch.sample.collector.Sample)
    lingering.csv       the target's connections still open at the end (LINGERING_COLUMNS)
    baseline_connections.csv  the same, taken at the end of the baseline (what healthy looks like)
    warmup_*.csv        Locust's CSVs for the warm-up
    locust_*.csv        Locust's CSVs for the load phase (stats, stats_history, failures, exceptions)
    requests-*.csv      every request the scenarios sent (start, end, scenario, route, status, outcome), per Locust process
    probe.csv           each probe request after settle
    pool_view.json      the app's own pool counts at baseline and after settle, if it exposes them
    summary.json        the verdict (schema SUMMARY_SCHEMA, see drainwatch.judge.verdict)
    summary.md          the same as GitHub-flavoured Markdown, for a CI job summary or a pull-request comment
    junit.xml           one test case per check
    report.html         self-contained report
    logs/               postgres.log, target.log, collector.log, locust-*.log
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from drainwatch.errors import UsageError

RUN_JSON = "run.json"
SAMPLES_CSV = "samples.csv"
LINGERING_CSV = "lingering.csv"
BASELINE_CONNECTIONS_CSV = "baseline_connections.csv"
PROBE_CSV = "probe.csv"
POOL_VIEW_JSON = "pool_view.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
PGBOUNCER_CSV = "pgbouncer.csv"  # SHOW POOLS over time, with --via-pgbouncer
SERVICE_WARNINGS_CSV = "service-warnings.csv"  # warnings the service printed, as drainwatch saw them
JUNIT_XML = "junit.xml"
REPORT_HTML = "report.html"
LOCUST_PREFIX = "locust"
WARMUP_PREFIX = "warmup"
LOGS = "logs"

SUMMARY_SCHEMA = "drainwatch.summary/2"
# Noted on an exception that escapes a run, so the error boundary keeps its traceback there.
RUN_DIR_NOTE = "drainwatch run folder: "

LINGERING_COLUMNS = [
    "pid", "application_name", "state", "kind", "backend_age_s", "xact_age_s", "state_age_s",
    "wait_event_type", "client_addr", "route", "scenario", "request_id", "statement", "likely", "state_change_t",
    "taken_at", "taken_ago_s", "taken_stack", "query",
]  # fmt: skip


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader never sees half a file, even if we are killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def make_run_dir(run_dir: Path) -> None:
    """Create the run folder (and its parents). Raises UsageError naming the fix for any OSError."""
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise UsageError(f"run folder {run_dir} already exists", hint="choose another --run-id") from exc
    except OSError as exc:
        raise UsageError(
            f"cannot create the run folder {run_dir} ({exc.strerror or exc})",
            hint="choose a writable folder with --out DIR",
        ) from exc
