"""Reading a run directory into pandas, and shaping its series for plotting.

Every file but the directory itself is optional: an interrupted run may stop before Locust,
the lingering snapshot, the probe or the verdict wrote anything. A missing, empty or
unreadable file becomes a plain-words note in ``RunData.notes`` and a ``None``; nothing
here raises for what a run left behind, so a partial run still gets its report.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drainwatch.rundir import (
    LINGERING_COLUMNS,
    LINGERING_CSV,
    LOCUST_PREFIX,
    PGBOUNCER_CSV,
    PROBE_CSV,
    RUN_JSON,
    SAMPLES_CSV,
    SUMMARY_JSON,
    WARMUP_PREFIX,
)
from drainwatch.sample.collector import Sample
from drainwatch.sample.pooler import COLUMNS as POOLER_COLUMNS

log = logging.getLogger(__name__)

MAX_POINTS = 2000  # per series: a 1,400 px wide chart cannot show more
PHASES = ("provision", "warmup", "baseline", "load", "settle", "probe")
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
SAMPLE_READINGS = [c for c in Sample.columns() if c not in ("t", "late_ms", "gap")]
# Only what the report shows: a 24 h history is half a million rows.
HISTORY_COLUMNS = ["Timestamp", "Name", "Requests/s", "Failures/s", "50%", "95%"]
STATS_COLUMNS = [
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Max Response Time",
    "Requests/s",
    "Failures/s",
    "50%",
    "95%",
    "99%",
]
LINGERING_DTYPES = {c: "float64" if c.endswith("_s") else "str" for c in LINGERING_COLUMNS}
LATEST_TIME = 253402300799.0  # 9999-12-31: a later "unix time" is no time a clock or a page can show
TIME_COLUMNS = {"t", "Timestamp"}  # unix times in the CSVs


@dataclass(frozen=True)
class Shape:
    """What the report, compare and forecast expect of a value in run.json or summary.json.

    ``kind`` is number, time, text, any, table, map or list. A table's ``keys`` are checked
    (others are kept as they are; ``required`` ones must be there); a map's values and a
    list's items are each ``item``. ``null`` is as good as a missing key unless ``needed``.
    Numbers are finite; times lie between 1970 and 9999.
    """

    kind: str
    keys: dict[str, Shape] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    item: Shape | None = None
    needed: bool = False
    whole: bool = False  # a list that is left out whole when one item does not fit


NUMBER, TIME, TEXT, ANY = Shape("number"), Shape("time"), Shape("text"), Shape("any")
NEEDED_NUMBER, NEEDED_TEXT = Shape("number", needed=True), Shape("text", needed=True)


def _table(*required: str, **keys: Shape) -> Shape:
    return Shape("table", keys, required)


def _map(item: Shape) -> Shape:
    return Shape("map", item=item)


def _list(item: Shape) -> Shape:
    return Shape("list", item=item)


_SPAN = Shape("list", item=TIME, whole=True)  # [start, end]: end null while a phase runs
RUN_SHAPE = _table(
    phases=_map(_SPAN),
    config=_table(),
    target=_table(),
    database=_table(),
    versions=_table(),
    isolation=_map(
        _table(
            "verdict",
            "leaked",
            "requests",
            "per_1000",
            verdict=NEEDED_TEXT,
            per_1000=NUMBER,
            endpoints=_map(_table("leaked", "requests")),
        )
    ),
    sweep=_list(
        _table(
            "after_ms", "verdict", "leaked", "requests", after_ms=NEEDED_NUMBER, verdict=NEEDED_TEXT, probability=NUMBER
        )
    ),
    faults=_list(_table("fault", start=TIME)),
)
_LEVELS = _table(total=NUMBER)
SUMMARY_SHAPE = _table(
    verdict=TEXT,
    reasons=_list(ANY),
    checks=_list(_table()),
    baseline=_LEVELS,
    peak=_LEVELS,
    final=_LEVELS,
    leaked=NUMBER,
    leaked_by_kind=_map(ANY),
    recovery_s=NUMBER,
    oldest_held_s=NUMBER,
    probe=_table(ok=NUMBER, attempts=NUMBER),
    idle_in_transaction=_table(count=NUMBER, oldest_s=NUMBER),
    zombie=_table("peak_active", "lasted_s", peak_active=NUMBER, lasted_s=NEEDED_NUMBER),
    pool_view=_table(),
    scenarios=_map(NUMBER),
    routes=_map(ANY),
    attribution=_table("of", likely=_map(ANY), statements=_map(ANY)),
    diagnosis=_list(_table("pattern", "fix")),
    forecast=_table(
        "sentence",
        sentence=NEEDED_TEXT,
        assumptions=_list(NEEDED_TEXT),
        rates=_map(
            _table(
                "leaked", "requests", "rate", "low", "high", rate=NEEDED_NUMBER, low=NEEDED_NUMBER, high=NEEDED_NUMBER
            )
        ),
    ),
)
_MISSING = object()


def conform(value: Any, shape: Shape, where: str, notes: list[str]) -> Any:
    """``value`` with every part that is not of its ``shape`` left out, each named in ``notes``.

    Returns ``_MISSING`` when ``value`` itself does not fit.
    """
    if value is None:
        return _MISSING if shape.needed else None
    kind = shape.kind
    if kind in ("number", "time"):
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        fits = fits and (kind == "number" or 0 <= value <= LATEST_TIME)
    elif kind == "text":
        fits = isinstance(value, str)
    elif kind == "any":
        fits = True
    elif kind in ("table", "map"):
        if not isinstance(value, dict):
            fits = False
        else:
            out = {}
            for key, item in value.items():
                inner = shape.item if kind == "map" else shape.keys.get(key, ANY)
                kept = conform(item, inner, f"{where}.{key}", notes) if inner is not None else item
                if kept is None and inner is not None and inner.kind in ("table", "map", "list"):
                    continue  # null where a table belongs: as if missing, so .get(key, {}) is one
                if kept is not _MISSING:
                    out[key] = kept
            lacking = [key for key in shape.required if key not in out]
            if lacking:
                notes.append(f"{where} has no {', '.join(lacking)}; left out")
                return _MISSING
            return out
    else:  # list
        if not isinstance(value, list):
            fits = False
        else:
            kept = [conform(item, shape.item or ANY, f"{where}[{i}]", notes) for i, item in enumerate(value)]
            if shape.whole and _MISSING in kept:
                return _MISSING
            return [item for item in kept if item is not _MISSING]
    if not fits:
        notes.append(f"{where} is not a {kind}: {_brief(value)}; left out")
        return _MISSING
    return value


def _brief(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


@dataclass
class RunData:
    """What a run directory holds; ``None`` where a file is missing or unreadable."""

    run_dir: Path
    run: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    samples: pd.DataFrame | None = None
    lingering: pd.DataFrame | None = None
    probe: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    warmup_history: pd.DataFrame | None = None
    stats: pd.DataFrame | None = None
    failures: pd.DataFrame | None = None
    exceptions: pd.DataFrame | None = None
    pooler: pd.DataFrame | None = None  # PgBouncer's SHOW POOLS over time (pgbouncer.csv), when there was one
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.run.get("status") or "unknown")

    @property
    def phases(self) -> dict[str, tuple[float, float | None]]:
        """Known phases in run order; an end of ``None`` is a phase the run never finished."""
        raw = self.run.get("phases") or {}
        out: dict[str, tuple[float, float | None]] = {}
        for name in sorted(raw, key=lambda n: PHASES.index(n) if n in PHASES else len(PHASES)):
            span = raw[name]
            if isinstance(span, (list, tuple)) and span and span[0] is not None:
                out[name] = (float(span[0]), float(span[1]) if len(span) > 1 and span[1] is not None else None)
        return out

    def origin(self) -> tuple[float, str]:
        """Time zero of the charts: the start of the load when known, else of the run."""
        phases = self.phases
        if "load" in phases:
            return phases["load"][0], "load start"
        starts = [s for s, _ in phases.values()]
        if self.samples is not None and len(self.samples):
            starts.append(float(self.samples["t"].iloc[0]))
        if self.history is not None and len(self.history):
            starts.append(float(self.history["Timestamp"].iloc[0]))
        return (min(starts), "run start") if starts else (0.0, "run start")

    def span(self) -> tuple[float, float] | None:
        """First and last unix time the run knows of, from its phases and its data."""
        points = [t for phase in self.phases.values() for t in phase if t is not None]
        if self.samples is not None and len(self.samples):
            points += [float(self.samples["t"].iloc[0]), float(self.samples["t"].iloc[-1])]
        if self.history is not None and len(self.history):
            points += [float(self.history["Timestamp"].min()), float(self.history["Timestamp"].max())]
        return (min(points), max(points)) if points else None

    def baseline_total(self) -> float | None:
        """The verdict's baseline; for a run without one, the median of the baseline window as judge() takes it."""
        found = ((self.summary or {}).get("baseline") or {}).get("total")
        if found is not None:
            return float(found)
        start, end = self.phases.get("baseline", (0.0, None))
        if end is None or self.samples is None:
            return None
        window = self.samples.loc[self.samples["t"].between(start, end), "total"].dropna()
        return float(window.median()) if len(window) else None


def load_run(run_dir: Path) -> RunData:
    """Read everything in ``run_dir``. Raises FileNotFoundError only if the folder is missing."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    data = RunData(run_dir=run_dir)
    data.run = _read_json(run_dir / RUN_JSON, data.notes, RUN_SHAPE) or {}
    data.summary = _read_json(run_dir / SUMMARY_JSON, data.notes, SUMMARY_SHAPE)
    if data.summary is not None and not str(data.summary.get("schema", "")).startswith("drainwatch.summary/"):
        data.notes.append(f"{SUMMARY_JSON} has an unknown schema {data.summary.get('schema')!r}; read as if it were v1")
    numeric = {c: "float32" for c in SAMPLE_READINGS + ["late_ms", "gap"]} | {"t": "float64"}
    data.samples = _read_csv(run_dir / SAMPLES_CSV, numeric, data.notes)
    if data.samples is not None:
        data.samples = _clean_samples(data.samples)
    data.lingering = _read_csv(run_dir / LINGERING_CSV, LINGERING_DTYPES, data.notes)
    data.probe = _read_csv(
        run_dir / PROBE_CSV,
        {"t": "float64", "status": "str", "ok": "str", "elapsed_ms": "float64", "error": "str"},
        data.notes,
    )
    history = {c: "float32" for c in HISTORY_COLUMNS} | {"Timestamp": "float64", "Name": "category"}
    data.history = _timed(_read_locust(run_dir, "stats_history", history, data.notes))
    data.warmup_history = _timed(_read_csv(run_dir / f"{WARMUP_PREFIX}_stats_history.csv", history, []))
    stats = {c: "float64" for c in STATS_COLUMNS} | {"Name": "str"}
    data.stats = _read_locust(run_dir, "stats", stats, data.notes)
    failures = {
        "Method": "str",
        "Name": "str",
        "Error": "str",
        "Occurrences": "float64",
        "First Seen": "str",
        "Last Seen": "str",
    }
    data.failures = _read_locust(run_dir, "failures", failures, data.notes)
    exceptions = {"Count": "float64", "Message": "str", "Traceback": "str", "Nodes": "str"}
    data.exceptions = _read_locust(run_dir, "exceptions", exceptions, data.notes)
    if (run_dir / PGBOUNCER_CSV).is_file():  # only runs behind a PgBouncer have one: no note when missing
        pooler = _read_csv(run_dir / PGBOUNCER_CSV, dict.fromkeys(POOLER_COLUMNS, "float64"), data.notes)
        data.pooler = None if pooler is None else _clean_pooler(pooler)
    return data


def _read_locust(run_dir: Path, part: str, columns: dict[str, str], notes: list[str]) -> pd.DataFrame | None:
    """Locust's ``locust_<part>.csv``; for runs made of cycles (``--isolate``, ``--sweep-disconnect``),
    each cycle's ``locust-<cycle>_<part>.csv`` together, with one Aggregated row of their sums."""
    single = run_dir / f"{LOCUST_PREFIX}_{part}.csv"
    cycles = sorted(run_dir.glob(f"{LOCUST_PREFIX}-*_{part}.csv"))
    if single.is_file() or not cycles:
        return _read_csv(single, columns, notes)
    frames = [frame for path in cycles if (frame := _read_csv(path, columns, notes)) is not None]
    if not frames:
        return None
    joined = pd.concat(frames, ignore_index=True)
    if part == "stats" and "Name" in joined:
        rows = joined[joined["Name"] != "Aggregated"]
        total = {c: rows[c].sum() for c in ("Request Count", "Failure Count") if c in rows}
        joined = pd.concat([rows, pd.DataFrame([{"Name": "Aggregated", **total}])], ignore_index=True)
    return joined


def _read_json(path: Path, notes: list[str], shape: Shape) -> dict[str, Any] | None:
    if not path.is_file():
        notes.append(f"{path.name} is missing")
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({exc})")
        return None
    if not isinstance(found, dict):
        notes.append(f"{path.name} does not hold a JSON object")
        return None
    kept: dict[str, Any] = conform(found, shape, path.name, notes)  # a dict fits a dict's shape
    return kept


def _read_csv(path: Path, columns: dict[str, str], notes: list[str]) -> pd.DataFrame | None:
    """Only ``columns`` (those present), with their dtypes; a column the file lacks comes back empty."""
    if not path.is_file():
        notes.append(f"{path.name} is missing")
        return None
    if path.stat().st_size == 0:
        notes.append(f"{path.name} is empty")
        return None
    options: dict[str, Any] = {
        "usecols": lambda c: c in columns,
        "keep_default_na": False,
        "na_values": ["N/A", ""],
        "on_bad_lines": "skip",
        "engine": "c",
    }
    try:
        try:
            frame = pd.read_csv(path, dtype=columns, **options)
        except ValueError:
            # A stray value (a line cut short by a kill) breaks a typed read: coerce it instead.
            frame = pd.read_csv(path, dtype=str, **options)
            for name, kind in columns.items():
                if name in frame and kind.startswith("float"):
                    frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(kind)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        notes.append(f"{path.name} could not be read ({reason})")
        log.info("cannot read %s: %s", path, exc)  # in the notes: the page names it, compare's error too
        return None
    for name, kind in columns.items():
        if name not in frame:
            frame[name] = pd.Series(dtype=kind if kind != "category" else "str", index=frame.index)
        elif kind == "str":
            frame[name] = frame[name].fillna("")
        elif kind.startswith("float"):  # inf, or a time no clock shows, is no reading
            low, high = (0.0, LATEST_TIME) if name in TIME_COLUMNS else (-np.inf, np.inf)
            frame[name] = frame[name].where((frame[name] >= low) & (frame[name] <= high) & frame[name].abs().lt(np.inf))
    return frame  # type: ignore[no-any-return]  # pandas-stubs: read_csv's frame; no rows is not a problem: no failures, no lingering connections


def _timed(history: pd.DataFrame | None) -> pd.DataFrame | None:
    """Locust's history without the rows that have no time (a line cut short)."""
    return None if history is None else history.dropna(subset=["Timestamp"]).reset_index(drop=True)


def _clean_samples(samples: pd.DataFrame) -> pd.DataFrame:
    samples = samples.dropna(subset=["t"]).sort_values("t", kind="stable").reset_index(drop=True)
    gap = samples["gap"].fillna(0) > 0
    samples["gap"] = gap
    # A gap row's zeros are "no reading", not "no connections".
    samples.loc[gap, SAMPLE_READINGS] = np.nan
    return samples


def _clean_pooler(pooler: pd.DataFrame) -> pd.DataFrame:
    """pgbouncer.csv in time order, a gap row's counts "no reading" (NaN) rather than zero."""
    pooler = pooler.dropna(subset=["t"]).sort_values("t", kind="stable").reset_index(drop=True)
    gap = pooler["gap"].fillna(0) > 0
    pooler["gap"] = gap
    counts = [c for c in POOLER_COLUMNS if c not in ("t", "gap")]
    pooler.loc[gap, counts] = np.nan
    return pooler


def pooler_series(pooler: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """PgBouncer's counts ready to plot, indexed by unix time; past ``max_points`` each bin keeps
    its maximum (a burst of waiting clients must not be averaged away)."""
    counts = [c for c in POOLER_COLUMNS if c not in ("t", "gap")]
    return _bin_frame(pooler.set_index("t")[counts], "max", max_points)


def gap_spans(samples: pd.DataFrame, min_width: float = 0.0) -> list[tuple[float, float]]:
    """Unix time spans with no reading: runs of gap rows, and holes where the collector was silent."""
    t = samples["t"].to_numpy()
    if len(t) < 2:
        return []
    gap = samples["gap"].to_numpy()
    nxt = np.append(t[1:], t[-1])
    spans = [(t[i], nxt[i]) for i in np.flatnonzero(gap)]
    step = float(np.median(np.diff(t)))
    holes = np.flatnonzero(np.diff(t) > max(5 * step, 1.0))
    spans += [(t[i], t[i + 1]) for i in holes]
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= max(min_width, step * 1.5):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, max(end, start + min_width)])
    return [(a, b) for a, b in merged]


def connection_series(samples: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, float]:
    """Samples ready to plot, and the bin width in seconds (0: not downsampled).

    Past ``max_points`` each bin keeps its busiest reading (the row with the highest
    total), so a spike or a leak stays visible and the states still add up to the total.
    Bins with no reading are NaN so the lines break there instead of bridging a gap.
    """
    cols = ["t", "total", "active", "idle", "idle_in_transaction", "idle_in_transaction_aborted", "other"]
    if len(samples) <= max_points:
        frame = samples[cols]
        t = frame["t"].to_numpy()
        if len(t) > 2:
            step = float(np.median(np.diff(t)))
            holes = np.flatnonzero(np.diff(t) > max(5 * step, 1.0))
            if len(holes):  # a NaN row inside each hole breaks the line there
                filler = pd.DataFrame({"t": t[holes] + step}, columns=cols)
                frame = pd.concat([frame, filler]).sort_values("t", kind="stable")
        return frame.reset_index(drop=True), 0.0
    t0, t1 = float(samples["t"].iloc[0]), float(samples["t"].iloc[-1])
    width = (t1 - t0) / max_points or 1.0
    valid = samples.loc[samples["total"].notna(), cols]
    bins = ((valid["t"] - t0) // width).clip(upper=max_points - 1).astype("int64")
    busiest = valid.assign(bin=bins).sort_values(["bin", "total"], kind="stable").drop_duplicates("bin", keep="last")
    frame = busiest.set_index("bin").reindex(range(max_points))
    centres = t0 + (np.arange(max_points) + 0.5) * width
    frame["t"] = frame["t"].fillna(pd.Series(centres, index=frame.index))
    return frame.reset_index(drop=True), width


def scenario_of(name: str) -> str:
    """The chaos scenario of a Locust request name: its first word ("disconnect POST /chat")."""
    first = str(name).split(" ", 1)[0]
    return "unnamed" if not first or first.upper() in HTTP_METHODS or first.startswith("/") else first


def scenario_rates(history: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Requests/s and failures/s per scenario (columns), indexed by unix time.

    Falls back to the Aggregated rows (one column, "all") when Locust ran without
    ``--csv-full-history``. Past ``max_points`` requests/s is the bin's mean (throughput)
    and failures/s its maximum, so a burst of failures is not averaged away.
    """
    per_name = history[history["Name"] != "Aggregated"]
    if per_name.empty:
        per_name = history.assign(Name="all")
        scenario = pd.Series("all", index=per_name.index)
    else:
        per_name = per_name[per_name["Name"].notna()]
        names = per_name["Name"].astype("category")
        # Map each distinct name once, not each of the (up to millions of) rows.
        lookup = np.array([scenario_of(n) for n in names.cat.categories] or [""], dtype=object)
        scenario = pd.Series(lookup[names.cat.codes.to_numpy()], index=per_name.index)
    grouped = per_name.groupby([per_name["Timestamp"], scenario], observed=True)[["Requests/s", "Failures/s"]].sum()
    rps = grouped["Requests/s"].unstack()
    fps = grouped["Failures/s"].unstack()
    return _bin_frame(rps, "mean", max_points), _bin_frame(fps, "max", max_points)


def latency(history: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """p50/p95 (ms) of all requests, indexed by unix time; each bin keeps its maximum."""
    agg = history[history["Name"] == "Aggregated"].set_index("Timestamp")[["50%", "95%"]]
    return _bin_frame(agg[~agg.index.duplicated(keep="last")], "max", max_points)


def _bin_frame(frame: pd.DataFrame, how: str, max_points: int) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame
    t = frame.index.to_numpy(dtype="float64")
    width = (t[-1] - t[0]) / max_points or 1.0
    bins = np.minimum((t - t[0]) // width, max_points - 1).astype("int64")
    binned = frame.groupby(bins).agg(how).reindex(range(max_points))
    binned.index = t[0] + (np.arange(max_points) + 0.5) * width
    return binned


def scenario_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Locust's final totals summed per scenario, plus an "all" row from Aggregated."""
    per_name = stats[stats["Name"] != "Aggregated"]
    table = per_name.groupby(per_name["Name"].map(scenario_of)).agg(
        requests=("Request Count", "sum"),
        failures=("Failure Count", "sum"),
        rps=("Requests/s", "sum"),
        fps=("Failures/s", "sum"),
        p95=("95%", "max"),
    )
    total = stats[stats["Name"] == "Aggregated"]
    if not total.empty:
        row = total.iloc[-1]
        table.loc["all"] = [
            row["Request Count"],
            row["Failure Count"],
            row["Requests/s"],
            row["Failures/s"],
            row["95%"],
        ]
    table["failure_pct"] = 100 * table["failures"] / table["requests"].where(table["requests"] > 0)
    return table
