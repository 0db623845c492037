"""What the judge weighs, read from the run folder: the judge itself opens no file and sends no
request (``drainwatch.judge`` is pure), so every reader it once had is here.

Each reader forgives a file that is missing or cut short (a run stopped early still gets a
verdict from what exists), and returns plain records the judge's rules take.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from drainwatch.judge.server import log_time

_CANCEL = re.compile(r"canceling statement due to user request")
_REFUSED = re.compile(r"too many clients already|remaining connection slots are reserved")


def read_requests(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every request the scenarios logged (start, end as floats); unreadable files are skipped."""
    out: list[dict[str, Any]] = []
    for path in paths:
        try:
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    try:
                        out.append({**row, "start": float(row["start"]), "end": float(row["end"])})
                    except (KeyError, ValueError):
                        continue
        except OSError:
            continue
    return sorted(out, key=lambda r: r["start"])


def cancel_times(log_path: Path | None) -> list[float] | None:
    """Unix times of the statements PostgreSQL cancelled on request; None with no log to read."""
    if log_path is None or not log_path.is_file():
        return None
    found = []
    with open(log_path, errors="replace") as handle:
        for line in handle:
            if _CANCEL.search(line) and (when := log_time(line)) is not None:
                found.append(when)
    return sorted(found)


def active_samples(samples_csv: Path, start: float, end: float) -> list[tuple[float, int]]:
    """(t, active backends of the target) for every sample between ``start`` and ``end``."""
    out = []
    try:
        with open(samples_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    t = float(row["t"])
                    if start <= t <= end and row.get("gap") != "1":
                        out.append((t, int(float(row["active"]))))
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        return []
    return out


def refusals(log_path: Path | None) -> dict[str, Any]:
    """Connections PostgreSQL refused for want of slots, from its log (None when there is no log to read)."""
    if log_path is None or not log_path.is_file():
        return {"count": None, "first": None}
    count, first = 0, None
    with open(log_path, errors="replace") as handle:
        for line in handle:
            if _REFUSED.search(line):
                count += 1
                if first is None:
                    first = log_time(line)
    return {"count": count, "first": first}


def peak_of_everyone(samples_csv: Path) -> dict[str, Any]:
    """The most client backends anyone held at once (the collector's own included), and when."""
    peak, when = 0, None
    try:
        with open(samples_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("gap") == "1":
                    continue
                value = int(float(row.get("all_client_backends") or 0)) + 1  # + the collector, excluded from its count
                if value > peak:
                    peak, when = value, float(row["t"])
    except OSError:
        pass
    return {"peak": peak, "at": when}


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def locust_rows(prefix: Path, table: str) -> list[dict[str, str]]:
    """The rows of one of Locust's CSVs for the run prefix (``stats``, ``failures``, ``exceptions``)."""
    return _rows(Path(f"{prefix}_{table}.csv"))


def load_counts(prefix: Path) -> dict[str, int]:
    """Requests Locust sent and exceptions its users raised, from its CSVs (no totals: no request)."""
    counts: dict[str, int] = {"requests": 0}
    try:
        with open(f"{prefix}_stats.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("Name") == "Aggregated":
                    counts["requests"] = int(float(row.get("Request Count") or 0))
        with open(f"{prefix}_exceptions.csv", newline="") as handle:
            counts["exceptions"] = sum(int(float(row.get("Count") or 0)) for row in csv.DictReader(handle))
    except (OSError, ValueError):
        pass
    return counts


def load_holds(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per route, the holds given back between two pool views (the one read before the load and the
    one after settle): counts and totals subtracted, percentiles and the longest as the later view
    has them. A route whose count went down (a restarted service) is left out."""
    earlier = (before or {}).get("holds") or {}
    out = {}
    for route, h in ((after or {}).get("holds") or {}).items():
        was = earlier.get(route) or {}
        count = int(h.get("count") or 0) - int(was.get("count") or 0)
        if count > 0:
            total = float(h.get("total_s") or 0) - float(was.get("total_s") or 0)
            out[route] = {**h, "count": count, "total_s": round(max(0.0, total), 3)}
    return dict(sorted(out.items(), key=lambda kv: -float(kv[1]["total_s"])))
