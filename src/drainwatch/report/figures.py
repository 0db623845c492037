"""The timeline figure: connections by state, traffic per scenario and latency on one time axis
(and, behind a PgBouncer, the pooler's clients and server connections).

Plotted from ``RunData`` with matplotlib's Agg backend into PNG bytes; the HTML step embeds
them. Long series arrive here already downsampled by ``drainwatch.report.rundata``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

# A headless renderer even when the host process (a notebook, a CI shell with DISPLAY set)
# would pick a GUI backend; it must happen before pyplot is imported anywhere.
matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from drainwatch.report.rundata import (
    RunData,
    connection_series,
    gap_spans,
    latency,
    pooler_series,
    scenario_rates,
)
from drainwatch.rundir import SERVICE_WARNINGS_CSV
from drainwatch.sample.service_log import read_warnings

STATE_STYLE = [  # bottom to top of the stack: healthy first, suspicious on top where the eye lands
    ("idle", "idle (pooled or held: see the table below)", "#a5d8ff"),
    ("active", "active", "#4dabf7"),
    ("other", "other", "#ced4da"),
    ("idle_in_transaction", "idle in transaction", "#ff922b"),
    ("idle_in_transaction_aborted", "idle in transaction (aborted)", "#e8590c"),
]
PHASE_COLOURS = {
    "provision": "#868e96",
    "warmup": "#fab005",
    "baseline": "#40c057",
    "load": "#4c6ef5",
    "settle": "#be4bdb",
    "probe": "#15aabf",
}
SCENARIO_COLOURS = {
    "steady": "#2f9e44",
    "disconnect": "#7048e8",
    "timeout": "#f08c00",
    "error": "#e03131",
    "all": "#343a40",
}
OTHER_COLOURS = ["#1098ad", "#d6336c", "#5c940d", "#862e9c", "#a61e4d", "#364fc7"]
GAP_COLOUR = "#495057"
POOLER_SERVERS = [  # stacked areas: the pooler's server connections (to PostgreSQL)
    ("sv_active", "server connections in use (sv_active)", "#b2f2bb"),
    ("sv_idle", "server connections idle (sv_idle)", "#dee2e6"),
]
POOLER_CLIENTS = [  # lines on top: the service's client connections (to the pooler)
    ("cl_active", "clients active (cl_active)", "#1971c2"),
    ("cl_waiting", "clients waiting for a server (cl_waiting)", "#e03131"),
]
FAULT_COLOUR = "#f03e3e"
WARNING_COLOURS = ["#e8590c", "#9c36b5", "#0b7285", "#5f3dc4"]  # a row of ticks per kind the service logged
LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8.5, "frameon": False}

ToX = Callable[[Any], Any]  # unix seconds (scalar or array) → the chart's x unit


@dataclass
class Timeline:
    png: bytes
    caption: str  # what a reader needs to read the chart right: time zero, downsampling


def timeline(data: RunData) -> Timeline | None:
    """The three-panel timeline, or None when the run recorded no time series at all."""
    samples = data.samples if data.samples is not None and len(data.samples) else None
    history = data.history if data.history is not None and len(data.history) else None
    if samples is None and history is None:
        return None
    origin, origin_name = data.origin()
    lo, hi = data.span() or (0.0, 1.0)
    hi = max(hi, lo + 1.0)
    unit, scale = _unit(hi - lo)

    def x(unix: Any) -> Any:
        return (np.asarray(unix, dtype="float64") - origin) / scale

    pooled = data.pooler is not None and bool(data.pooler["gap"].eq(False).any())
    fig = Figure(figsize=(12, 11.4 if pooled else 9.2), dpi=100, layout="constrained")
    if pooled:
        ax_conn, ax_pool, ax_rps, ax_lat = fig.subplots(4, 1, sharex=True, height_ratios=[2.3, 1.2, 1.3, 1.1])
    else:
        ax_conn, ax_rps, ax_lat = fig.subplots(3, 1, sharex=True, height_ratios=[2.3, 1.3, 1.1])
    notes: list[str] = []
    spans = run_gaps(data, lo, hi)
    for ax in (ax_rps, ax_lat):
        _backdrop(ax, data, x, spans, labels=False, right=hi)
    if pooled:
        notes.append(_pooler_panel(ax_pool, data, x, lo, hi))
    width = connection_panel(ax_conn, data, x, spans=spans, right=hi)
    if width:
        notes.append(f"connections: each point is the busiest reading of its {width:.0f} s bin")
    if read_warnings(data.run_dir / SERVICE_WARNINGS_CSV):
        notes.append("ticks above the counts: lines the service logged, a row per kind (service-warnings.csv)")
    ax_conn.set_title("Target's connections to PostgreSQL, by state", loc="left", fontsize=11)

    if history is not None:
        long = _traffic(ax_rps, data, history, x)
        _latency(ax_lat, history, x)
        if long:
            notes.append("traffic: requests/s averaged, failures/s and latency their maximum per bin")
    else:
        _empty(ax_rps, "no Locust history: locust_stats_history.csv is missing or empty")
        _empty(ax_lat, "no latency: locust_stats_history.csv is missing or empty")
    ax_rps.set_title("Requests/s (solid) and failures/s (dashed) per scenario", loc="left", fontsize=11)
    ax_lat.set_title("Latency of all requests", loc="left", fontsize=11)
    ax_lat.set_xlabel(f"time since {origin_name} ({unit})")
    ax_lat.set_xlim(x(lo), x(hi))

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    caption = f"Time zero is the {origin_name}. " + ("; ".join(notes) + "." if notes else "")
    if spans:
        caption += " Hatched: no reading (the collector could not reach PostgreSQL, or was not running)."
    return Timeline(png=buffer.getvalue(), caption=caption.strip())


def connection_panel(ax: Axes, data: RunData, x: ToX, *, spans: list[tuple[float, float]], right: float) -> float:
    """One run's connections onto ``ax``: its phases and gaps behind, the states stacked, the
    total as a line, baseline, pool limit and max_connections. Shared by the report's timeline
    and the comparison. Returns the bin width in seconds (0: not downsampled)."""
    _backdrop(ax, data, x, spans, labels=True, right=right)
    if data.samples is None or not len(data.samples):
        _empty(ax, "no connection samples: samples.csv is missing or empty")
        return 0.0
    return _connections(ax, data, data.samples, x, bool(spans))


def run_gaps(data: RunData, lo: float, hi: float) -> list[tuple[float, float]]:
    """Spans with no reading, at least 1/400 of the axis wide: a one-minute outage in a 24 h soak must still show."""
    return gap_spans(data.samples, (hi - lo) / 400) if data.samples is not None and len(data.samples) else []


def _backdrop(ax: Axes, data: RunData, x: ToX, spans: list[tuple[float, float]], *, labels: bool, right: float) -> None:
    _phases(ax, data, x, labels=labels, right=right)
    for start, end in spans:
        ax.axvspan(x(start), x(end), color=GAP_COLOUR, alpha=0.25, hatch="///", lw=0)
    ax.grid(axis="y", color="#e9ecef", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _pooler_panel(ax: Axes, data: RunData, x: ToX, lo: float, hi: float) -> str:
    """PgBouncer's SHOW POOLS over time: the service's clients (active, waiting) and the pooler's
    server connections (in use, idle), with the injected faults as spans. Returns the caption's note."""
    assert data.pooler is not None
    _backdrop(ax, data, x, gap_spans(data.pooler, (hi - lo) / 400), labels=False, right=hi)
    series = pooler_series(data.pooler)
    xs = x(series.index)
    handles: list[Any] = []
    bottom = np.zeros(len(series))
    for column, label, colour in POOLER_SERVERS:
        values = np.nan_to_num(series[column].to_numpy(dtype="float64"))
        ax.fill_between(xs, bottom, bottom + values, step="post", color=colour, lw=0)
        bottom = bottom + values
        handles.append(Patch(color=colour, label=label))
    for column, label, colour in POOLER_CLIENTS:
        values = series[column].to_numpy(dtype="float64")
        if column == "cl_waiting":
            longest = float(np.nanmax(series["maxwait"].to_numpy(dtype="float64"), initial=0))
            if longest:
                label += f", longest wait {longest:g} s"
        ax.step(xs, values, where="post", color=colour, lw=1.6 if column == "cl_waiting" else 1.3)
        handles.append(_line(colour, "-", label, lw=1.6 if column == "cl_waiting" else 1.3))
    for fault in _faults(data):
        start, end = x(fault[0]), x(fault[1])
        if end - start > (x(hi) - x(lo)) / 400:
            ax.axvspan(start, end, color=FAULT_COLOUR, alpha=0.12, lw=0)
        ax.axvline(start, color=FAULT_COLOUR, lw=1.0, ls=":")
        ax.text(
            start,
            0.97,
            f" {fault[2]}",
            transform=blended_transform_factory(ax.transData, ax.transAxes),
            ha="left",
            va="top",
            fontsize=8.5,
            color=FAULT_COLOUR,
        )
    if data.run.get("faults"):
        handles.append(Patch(color=FAULT_COLOUR, alpha=0.3, label="injected fault"))
    clients = series[[c for c, *_ in POOLER_CLIENTS]].to_numpy(dtype="float64")
    top = max(float(np.nanmax(clients, initial=0)), float(np.max(bottom, initial=0)))
    ax.set_ylim(0, max(top, 1.0) * 1.18)
    ax.set_ylabel("at PgBouncer")
    ax.legend(handles=handles, **LEGEND)
    mode = ((data.run.get("database") or {}).get("pgbouncer") or {}).get("mode")
    ax.set_title(
        "PgBouncer's pools (SHOW POOLS): the service's clients and the pooler's server connections"
        + (f", {mode} mode" if mode else ""),
        loc="left",
        fontsize=11,
    )
    return "PgBouncer: cl_active, cl_waiting, sv_active and sv_idle from SHOW POOLS (pgbouncer.csv)"


def _faults(data: RunData) -> list[tuple[float, float, str]]:
    """The injected faults as (start, end, name), end at least start."""
    found = []
    for fault in data.run.get("faults") or []:
        start, end = fault.get("start"), fault.get("end")
        if isinstance(start, (int, float)):
            stop = float(end) if isinstance(end, (int, float)) and end >= start else float(start)
            found.append((float(start), stop, str(fault.get("fault") or fault.get("kind") or "fault")))
    return found


def _unit(span_s: float) -> tuple[str, float]:
    if span_s <= 900:
        return "s", 1.0
    if span_s <= 6 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _phases(ax: Axes, data: RunData, x: ToX, *, labels: bool, right: float) -> None:
    left_x, right_x = x(min((s for s, _ in data.phases.values()), default=right)), x(right)
    full = max(right_x - left_x, 1e-9)
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for name, (start, end) in data.phases.items():
        a, b = x(start), x(end if end is not None else right)
        ax.axvspan(a, b, color=PHASE_COLOURS.get(name.rsplit("/", 1)[-1], "#adb5bd"), alpha=0.07, lw=0)
        ax.axvline(a, color=PHASE_COLOURS.get(name.rsplit("/", 1)[-1], "#adb5bd"), lw=0.6, alpha=0.5)
        text = name if end is not None else f"{name} (unfinished)"
        # A label only where it fits: a 10 s warm-up is a sliver of a 24 h soak.
        if labels and (b - a) / full > 0.0075 * len(text) + 0.01:
            ax.text(
                (a + b) / 2,
                0.985,
                text,
                transform=top,
                ha="center",
                va="top",
                fontsize=9,
                color=PHASE_COLOURS.get(name.rsplit("/", 1)[-1], "#495057"),
                fontweight="bold",
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1.5},
            )


def _connections(ax: Axes, data: RunData, samples: pd.DataFrame, x: ToX, gaps: bool) -> float:
    series, width = connection_series(samples)
    xs = x(series["t"])
    bottom = np.zeros(len(series))
    handles: list[Any] = []
    for column, label, colour in STATE_STYLE:
        values = series[column].to_numpy(dtype="float64")
        if column in ("idle_in_transaction_aborted", "other") and not np.nansum(values):
            continue  # an always-empty layer only adds noise to the legend
        ax.fill_between(xs, bottom, bottom + values, step="post", color=colour, lw=0)
        bottom = bottom + np.nan_to_num(values)
        handles.append(Patch(color=colour, label=label))
    total = series["total"].to_numpy(dtype="float64")
    ax.step(xs, total, where="post", color="#212529", lw=0.9)
    handles.append(_line("#212529", "-", "total", lw=0.9))
    peak = float(np.nanmax(total)) if np.isfinite(total).any() else 0.0
    ceiling = _levels(ax, data, samples, peak, handles)
    leaked = (data.summary or {}).get("leaked")
    last = np.flatnonzero(np.isfinite(total))
    if leaked and len(last):
        ax.annotate(
            f"{leaked} leaked",
            xy=(xs[last[-1]], total[last[-1]]),
            xytext=(-8, 22),
            textcoords="offset points",
            ha="right",
            color="#c92a2a",
            fontsize=10,
            fontweight="bold",
            arrowprops={"arrowstyle": "->", "color": "#c92a2a"},
        )
    server = (data.summary or {}).get("server") or {}
    if server.get("first_refusal"):  # the moment PostgreSQL started turning clients away
        refused = float(x(np.array([server["first_refusal"]]))[0])
        ax.axvline(refused, color="#c92a2a", lw=1.4, ls=":")
        handles.append(_line("#c92a2a", ":", f"server refusing connections ({server.get('refusals')} refused)", lw=1.4))
    if server.get("full") and server.get("usable"):
        ax.axhline(server["usable"], color="#862e9c", lw=1.2, ls="-.")
        ceiling = max(ceiling, server["usable"])
        handles.append(
            _line("#862e9c", "-.", f"usable server slots {server['usable']} (reserved {server.get('reserved')})")
        )
    if gaps:
        handles.append(Patch(facecolor=GAP_COLOUR, alpha=0.25, hatch="///", label="no reading"))
    top = _service_warnings(ax, data, x, ceiling, handles)
    ax.set_ylim(0, max(ceiling * 1.12, top))
    ax.set_ylabel("connections")
    ax.legend(handles=handles, **LEGEND)
    return width


def _service_warnings(ax: Axes, data: RunData, x: ToX, ceiling: float, handles: list[Any]) -> float:
    """What the service logged (service-warnings.csv) as ticks above the counts, a row per kind, so
    "the garbage collector cleaned up connections" shows when it happened. Returns the y it needs."""
    by_kind: dict[str, list[float]] = {}
    for row in read_warnings(data.run_dir / SERVICE_WARNINGS_CSV):
        try:
            by_kind.setdefault(row["kind"], []).append(float(row["t"]))
        except (TypeError, ValueError):
            continue
    top = 0.0
    for i, (kind, times) in enumerate(sorted(by_kind.items(), key=lambda kv: -len(kv[1]))[: len(WARNING_COLOURS)]):
        top = ceiling * (1.04 + 0.05 * i)
        colour = WARNING_COLOURS[i]
        ax.plot(x(np.array(times)), np.full(len(times), top), ls="", marker="|", ms=10, mew=1.6, color=colour)
        handles.append(
            Line2D([], [], ls="", marker="|", ms=10, mew=1.6, color=colour, label=f"logged: {kind} ({len(times)})")
        )
    return top + ceiling * 0.14 if top else 0.0  # room above for the phase labels


def _levels(ax: Axes, data: RunData, samples: pd.DataFrame, peak: float, handles: list[Any]) -> float:
    """Baseline with its tolerance, pool limit and max_connections; returns the y the chart must reach."""
    summary, config = data.summary or {}, data.run.get("config") or {}
    baseline = data.baseline_total()
    tolerance = summary.get("tolerance", config.get("tolerance")) or 0
    if baseline is not None:
        ax.axhline(baseline, color="#2b8a3e", lw=1.6)
        if tolerance:
            ax.axhspan(baseline, baseline + tolerance, color="#2b8a3e", alpha=0.15, lw=0)
        handles.append(_line("#2b8a3e", "-", f"baseline {baseline:g} (tolerance +{tolerance})", lw=1.6))
    target = data.run.get("target") or {}
    pool_limit = summary.get("pool_limit") or target.get("pool_limit") or config.get("pool_limit")
    if pool_limit:
        ax.axhline(pool_limit, color="#e67700", lw=1.3, ls="--")
        handles.append(_line("#e67700", "--", f"pool limit {pool_limit}"))
    max_conn = summary.get("max_connections") or (data.run.get("database") or {}).get("max_connections")
    if not max_conn and samples["max_connections"].notna().any():
        max_conn = int(samples["max_connections"].max())
    ceiling = max(peak, baseline or 0, pool_limit or 0, 1)
    if max_conn and max_conn <= 3 * ceiling:
        ax.axhline(max_conn, color="#c92a2a", lw=1.3, ls="--")
        ceiling = max(ceiling, max_conn)
        handles.append(_line("#c92a2a", "--", f"max_connections {max_conn}"))
    elif max_conn:  # drawn to scale it would flatten everything else
        handles.append(_line("#c92a2a", "--", f"max_connections {max_conn} (off scale)"))
    return ceiling


def _line(colour: str, style: str, label: str, lw: float = 1.3) -> Line2D:
    return Line2D([], [], color=colour, ls=style, lw=lw, label=label)


def _traffic(ax: Axes, data: RunData, history: pd.DataFrame, x: ToX) -> bool:
    rps, fps = scenario_rates(history)
    top = max(
        float(np.nanmax(rps.to_numpy(dtype="float64"), initial=0)),
        float(np.nanmax(fps.to_numpy(dtype="float64"), initial=0)),
        1.0,
    )
    if data.warmup_history is not None and len(data.warmup_history):
        warm = data.warmup_history[data.warmup_history["Name"] == "Aggregated"]
        peak = float(np.nanmax(warm["Requests/s"].to_numpy(dtype="float64"), initial=0))
        # Faint and off the scale if need be: the warm-up is context, the load is the subject.
        ax.plot(
            x(warm["Timestamp"]),
            warm["Requests/s"],
            color="#adb5bd",
            lw=1,
            label=f"warm-up, all (peak {peak:.0f}/s)" if peak > 1.15 * top else "warm-up, all",
        )
    others = iter(OTHER_COLOURS * 4)
    for scenario in rps.columns:
        colour = SCENARIO_COLOURS.get(scenario) or next(others, "#495057")
        ax.plot(x(rps.index), rps[scenario], color=colour, lw=1.2, label=scenario)
        if scenario in fps and fps[scenario].fillna(0).any():
            ax.plot(x(fps.index), fps[scenario], color=colour, lw=1.0, ls="--")
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("per second")
    ax.legend(**LEGEND)
    return len(rps) < history["Timestamp"].nunique()


def _latency(ax: Axes, history: pd.DataFrame, x: ToX) -> None:
    lat = latency(history)
    if lat.empty or not lat.notna().any().any():
        _empty(ax, "no latency recorded")
        return
    ax.plot(x(lat.index), lat["50%"], color="#1971c2", lw=1.2, label="p50")
    ax.plot(x(lat.index), lat["95%"], color="#c2255c", lw=1.2, label="p95")
    low = float(np.nanmin(lat["50%"].where(lat["50%"] > 0))) if (lat["50%"] > 0).any() else 1.0
    if float(np.nanmax(lat["95%"])) / max(low, 1.0) > 100:
        ax.set_yscale("log")  # timeouts next to fast reads: linear would hide the fast ones
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("ms")
    ax.legend(**LEGEND)


def _empty(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="#868e96", fontsize=10)
    ax.set_yticks([])


VERDICT_COLOURS = {"PASS": "#2b8a3e", "LEAK": "#c92a2a", "SATURATED": "#e8590c", "ERROR": "#d9480f"}


def comparison_timeline(runs: list[tuple[str, RunData]]) -> Timeline | None:
    """Each run's connection panel, one above the other, on one x axis and one y scale.

    Each run's time zero is the start of its own load, so the panels line up on the moment
    the chaos began whatever the wall-clock times. ``runs`` pairs a panel title with its data.
    """
    frames = []
    for _, data in runs:
        origin, origin_name = data.origin()
        lo, hi = data.span() or (origin, origin + 1.0)
        frames.append((origin, origin_name, lo, max(hi, lo + 1.0)))
    if not any(data.samples is not None and len(data.samples) for _, data in runs):
        return None
    left = min(lo - origin for origin, _, lo, _ in frames)
    right = max(hi - origin for origin, _, _, hi in frames)
    unit, scale = _unit(right - left)
    fig = Figure(figsize=(12, 3.4 * len(runs) + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(runs), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    notes: list[str] = []
    top = 1.0
    for ax, (title, data), (origin, _, lo, hi) in zip(axes, runs, frames):

        def x(unix: Any, origin: float = origin) -> Any:
            return (np.asarray(unix, dtype="float64") - origin) / scale

        width = connection_panel(ax, data, x, spans=run_gaps(data, lo, hi), right=hi)
        top = max(top, ax.get_ylim()[1])  # one y scale: the same height is the same count
        if width:
            notes.append(f"{title.split(' ', 1)[0]}: each point is the busiest reading of its {width:.0f} s bin")
        verdict = str((data.summary or {}).get("verdict") or "no verdict")
        ax.set_title(title, loc="left", fontsize=11, fontweight="bold", color=VERDICT_COLOURS.get(verdict, "#495057"))
        ax.set_ylabel("connections")
    axes[0].set_ylim(0, top)
    axes[-1].set_xlim(left / scale, right / scale)
    names = {name for _, name, _, _ in frames}
    axes[-1].set_xlabel(f"time since {' / '.join(sorted(names))} ({unit})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    caption = (
        "Each run's time zero is the start of its load phase"
        if names == {"load start"}
        else "Time zero is each run's load start, or its run start when it never reached the load"
    )
    caption += "; the panels share the time axis and the connection scale. " + ("; ".join(notes) + "." if notes else "")
    return Timeline(png=buffer.getvalue(), caption=caption.strip())
