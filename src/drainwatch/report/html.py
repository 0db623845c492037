"""Rendering the report: one self-contained HTML page from ``RunData`` and the timeline PNG.

Nothing is loaded from anywhere: the style is inline and the figure a base64 data URI.
Every value read from the run directory is escaped: queries, error texts and request names
come from the system under test and may contain anything.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from html import escape
from typing import Any

from drainwatch import __version__
from drainwatch.judge.attribution import likely_sentence
from drainwatch.judge.verdict import recovery_sentence, telling
from drainwatch.plan import redact_dsn
from drainwatch.report.figures import Timeline
from drainwatch.report.page import MONO, PAGE
from drainwatch.report.rundata import RunData, scenario_table
from drainwatch.rundir import SERVICE_WARNINGS_CSV
from drainwatch.sample.service_log import describe, read_warnings
from drainwatch.units import human_hold, human_seconds

MAX_ROWS = 300  # a longer table is read by no one; the CSV is beside the report
VERDICT_CLASS = {"PASS": "pass", "LEAK": "leak", "SATURATED": "saturated", "ERROR": "error"}
CHECK_TITLES = {
    "drain": "Connections drained",
    "idle_in_transaction": "Nothing idle in a transaction",
    "held_connections": "No connection still held",
    "single_use": "Connections reused, none left after one request",
    "pool_view": "The app's pools agree",
    "probe": "Service still serves",
    "server_limit": "The server had room",
    "pooler": "PgBouncer is not stuck",
    "baseline_clean": "Baseline was clean",
    "shutdown": "Shut down cleanly",
    "leak_warnings": "Nothing left to the garbage collector",
    "saturation": "Served its steady traffic",
}
ROW_CLASS = {"held": "leak", "in_transaction": "leak", "never_reused": "leak", "unsure": "maybe"}


class Raw(str):
    """A table cell that is HTML already (built here from escaped parts)."""


def render_html(data: RunData, figure: Timeline | None) -> str:
    """The whole page as a string."""
    run_id = data.run.get("run_id") or (data.summary or {}).get("run_id") or data.run_dir.name
    verdict = (data.summary or {}).get("verdict") or "NO VERDICT"
    rendered = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    body = "\n".join(
        [
            f"<h1>drainwatch report <small>{escape(str(run_id))}</small></h1>",
            f'<p class="meta">{_meta(data)}</p>',
            _banner(data),
            _verdict(data),
            _findings(data),
            "<h2>Timeline</h2>",
            figure_html(figure),
            "<h2>Connections still open after settle</h2>",
            _lingering(data),
            *_service_log(data),
            "<h2>Traffic</h2>",
            _traffic(data),
            "<h2>Run</h2>",
            _run(data),
            f"<footer>Rendered by drainwatch {escape(__version__)} from the run directory alone, {rendered}.</footer>",
        ]
    )
    return page(f"{verdict} · drainwatch · {run_id}", body)


def page(title: str, body: str) -> str:
    """A self-contained page around ``body`` (HTML already): the report's inline style, no outside reference."""
    return PAGE.substitute(title=escape(title), mono=MONO, body=body)


def _meta(data: RunData) -> str:
    config, span = data.run.get("config") or {}, data.span()
    parts = [f"status <b>{escape(data.status)}</b>"]
    target = data.run.get("target") or {}
    if target.get("kind", "demo") == "demo" and config.get("variant"):
        parts.append(f"demo, variant <b>{escape(str(config['variant']))}</b>")
    elif target.get("command"):
        parts.append(f"served <code>{escape(str(target['command']))}</code>")
    elif target.get("url"):
        parts.append(f"target <b>{escape(str(target['url']))}</b>")
    if config.get("users"):
        parts.append(f"<b>{escape(str(config['users']))}</b> users")
    if span:
        parts.append(f"started <b>{utc(span[0])}</b>, ran <b>{human_seconds(span[1] - span[0])}</b>")
    return " · ".join(parts)


def _banner(data: RunData) -> str:
    out = ""
    if data.status != "completed" or not (data.summary or {}).get("verdict"):
        how = {
            "interrupted": "was interrupted",
            "error": "stopped with an error",
            "running": "never finished (run.json still says running: drainwatch itself was stopped hard)",
            "completed": "completed but wrote no verdict",
        }.get(data.status, "left no record of how it ended")
        unfinished = [name for name, (_, end) in data.phases.items() if end is None]
        phase = data.run.get("current_phase") or (unfinished[-1] if unfinished else None)
        error = data.run.get("error")
        out += (
            f'<div class="banner"><strong>This report is partial.</strong> The run {how}'
            + (f" during the {escape(str(phase))} phase" if phase else "")
            + (f": {escape(str(error))}" if error else "")
            + ". It shows what was collected until then.</div>"
        )
    if data.notes:
        out += '<div class="notes">Missing or unreadable: ' + "; ".join(escape(n) for n in data.notes) + ".</div>"
    return out


def _verdict(data: RunData) -> str:
    s = data.summary
    if s is None or not s.get("verdict"):
        why = "; ".join(escape(str(r)) for r in (s or {}).get("reasons") or []) or "the run was not judged"
        why = f"{_file('summary.json')} is missing" if s is None else why[:1].upper() + why[1:]
        return (
            '<section class="verdict none"><div><div class="word">NO VERDICT</div></div>'
            f"<div><p>{why}. The timeline and tables below show what was collected.</p></div></section>"
        )
    word = str(s["verdict"])
    tiles = _tiles(s)
    checks = [
        (
            Raw(
                f'<span class="{"ok" if c.get("passed") else "fail"} nw">{"✓ pass" if c.get("passed") else "✗ fail"}'
                "</span>"
            ),
            CHECK_TITLES.get(str(c.get("name")), str(c.get("name"))),
            c.get("detail", ""),
        )
        for c in s.get("checks") or []
    ]
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in s.get("reasons") or [])
    where = _where(s)
    return (
        f'<section class="verdict {VERDICT_CLASS.get(word, "none")}">'
        f'<div><div class="word">{escape(word)}</div><ul class="reasons">{reasons}</ul></div>'
        f'<div><div class="tiles">{"".join(tiles)}</div>'
        + (f'<p class="where">Leaks {where}.</p>' if where else "")
        + table_html(["result", "check", "what was seen"], checks)
        + f'<p class="muted">Tolerance {escape(str(s.get("tolerance", 0)))} connection(s) over baseline.</p>'
        + "</div></section>"
    )


def _tiles(s: Mapping[str, Any]) -> list[str]:
    """The verdict's figures, one tile each: leaked, back to baseline, probe, counts, idle in transaction."""
    leaked = int(s.get("leaked") or 0)
    shown_leaked = leaked if s.get("leaked_exact", True) else f"≥ {max(1, leaked)}"
    kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in (s.get("leaked_by_kind") or {}).items() if n)
    recovery, probe = s.get("recovery_s"), s.get("probe") or {}
    served = f"{probe.get('ok', 0)}/{probe.get('attempts', 0)} served"
    iit = s.get("idle_in_transaction") or {}
    levels = [(s.get(k) or {}).get("total") for k in ("baseline", "peak", "final")]
    fell = recovery is None and levels[0] is not None and levels[2] is not None and levels[2] < levels[0]
    tiles = [
        _tile(
            shown_leaked,
            (
                "leaked connections"
                if s.get("leaked_exact", True)
                else "leaked: seen by the probe or a full server, in no row; a floor"
            )
            + (f" ({kinds})" if kinds else ""),
            bad=leaked > 0 or not s.get("leaked_exact", True),
        ),
        # Only "never" is coloured: a pool that shrank below baseline is back to it while still leaking.
        _tile(
            f"after {human_seconds(recovery)}" if recovery is not None else "under it" if fell else "never",
            recovery_sentence(None, levels[2], levels[0]) if fell else "back to baseline after the load",
            bad=True if recovery is None else None,
        ),
        _tile(
            served + (", target down" if probe.get("target_alive") is False else ""),
            "probe after settle",
            bad=not probe.get("passed", False),
        ),
        _tile(" → ".join("?" if v is None else f"{v:g}" for v in levels), "connections baseline → peak → final"),
        _tile(
            iit.get("count", 0),
            f"idle in transaction, oldest {human_seconds(iit.get('oldest_s') or 0)}"
            + (f"; held up to {human_seconds(s['oldest_held_s'])}" if s.get("oldest_held_s") else ""),
            bad=bool(iit.get("count")),
        ),
    ]
    zombie, pools = s.get("zombie") or {}, s.get("pool_view")
    if zombie.get("peak_active"):  # work the database kept doing for clients that had gone
        tiles.append(
            _tile(f"{zombie['peak_active']} active", f"after the load, for {human_seconds(zombie['lasted_s'])}")
        )
    if pools:
        tiles.append(
            _tile(
                f"{pools.get('checked_out', '?')} checked out",
                "as the app's own pools count them",
                bad=bool(pools.get("checked_out")),
            )
        )
    return tiles


def _where(s: Mapping[str, Any]) -> str:
    """Where the leaked connections came from: scenario, route, the likely request, the statement."""
    tagged = {k: v for k, v in (s.get("scenarios") or {}).items() if k != "unknown"}
    where = "; ".join(
        f"by {what}: " + ", ".join(f"{escape(str(k))} <b>{escape(str(v))}</b>" for k, v in counts.items())
        for what, counts in (("scenario", tagged), ("route", s.get("routes") or {} if tagged else {}))
        if counts
    )
    found = s.get("attribution") or {}
    if found.get("likely"):
        safe = {**found, "likely": {escape(str(k)): v for k, v in found["likely"].items()}}
        where += ("; " if where else "") + f"most likely {likely_sentence(safe, '<code>')}"
    if found.get("statements"):
        where += "; by statement: " + ", ".join(
            f"<b>{n}</b> × <code>{escape(q)}</code>" for q, n in list(found["statements"].items())[:3]
        )
    return where


def _tile(value: object, label: str, *, bad: bool | None = None) -> str:
    cls = "" if bad is None else (" bad" if bad else " good")
    return f'<div class="tile{cls}"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def figure_html(
    figure: Timeline | None, alt: str = "Timeline: connections by state, requests and failures per scenario, latency"
) -> str:
    if figure is None:
        return '<p class="muted">No time series was recorded (no samples.csv, no Locust history).</p>'
    png = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{png}" alt="{escape(alt)}">'
        f"<figcaption>{escape(figure.caption)}</figcaption></figure>"
    )


def _hangups(data: RunData) -> list[str]:
    """Per disconnect request: did the client's hang-up reach the server's work?"""
    found = (data.summary or {}).get("hangups")
    if not isinstance(found, Mapping) or not found:
        return []
    rows = []
    for label, row in found.items():
        if not isinstance(row, Mapping):
            continue
        logged = bool(row.get("server_log"))
        rows.append(
            [
                label,
                _fmt(row.get("hangups")),
                _fmt(row.get("cancelled")) if logged else "unknown",
                _fmt(row.get("kept_working")),
                _fmt(row.get("unseen")),
            ]
        )
    head = ["disconnect request", "hang-ups", "statement cancelled", "backend kept working (at least)", "neither seen"]
    return [
        "<h3>Hang-ups: did they reach the server's work?</h3>",
        "<p>A statement cancelled just after the hang-up (in the embedded server's log: <code>canceling statement "
        "due to user request</code>) means the handler was cancelled and its driver told PostgreSQL; a backend "
        "still active with no request in flight means the handler ran on for a client that had gone (zombie "
        "work); neither means it had no statement running, or nothing could be seen.</p>",
        table_html(head, rows, numeric=range(1, 5)),
    ]


def _taken(row: Any) -> object:
    """Where the connection was checked out, and how long ago (from the app's pool view)."""
    site = getattr(row, "taken_at", "")
    if _missing(site) or not site:
        return ""
    stack = getattr(row, "taken_stack", "")
    ago = getattr(row, "taken_ago_s", None)
    when = f" · {human_seconds(float(ago))} ago" if ago is not None and not _missing(ago) else ""
    title = escape(str(stack)) if not _missing(stack) else ""
    return Raw(f'<span title="{title}"><code>{escape(str(site))}</code>{escape(when)}</span>')


def _service_log(data: RunData) -> list[str]:
    """What the service printed that drainwatch reads (only for a service it started)."""
    path = data.run_dir / SERVICE_WARNINGS_CSV
    if not path.is_file():
        return []
    rows = read_warnings(path)
    heading = "<h2>What the service logged</h2>"
    if not rows:
        return [
            heading,
            f"<p>No warning of the kinds drainwatch reads in {_file('logs/target.log')} (pool exhausted, "
            "garbage-collected connections, unclosed resources, pending tasks destroyed, coroutines never "
            "awaited, connections refused). <code>--dev-mode</code> makes Python print more of them.</p>",
        ]
    zero, label = data.origin()
    by_kind: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    table = [
        [
            describe(kind),
            len(seen),
            f"{float(seen[0]['t']) - zero:+.1f} s" if _number(seen[0]["t"]) else "",
            Raw(f"<code>{escape(_clip(seen[0]['line'], 200))}</code>"),
        ]
        for kind, seen in sorted(by_kind.items(), key=lambda kv: -len(kv[1]))
    ]
    return [
        heading,
        f"<p>Lines of {_file('logs/target.log')} by kind, first seen relative to the {escape(label)} "
        f"(every one in {_file(SERVICE_WARNINGS_CSV)}).</p>",
        table_html(["what", "lines", "first seen", "first line"], table, numeric=(1, 2)),
        *_collected(data),
    ]


def _collected(data: RunData) -> list[str]:
    """Where the connections the garbage collector cleaned up were taken, when the pool view saw it."""
    sites = (data.summary or {}).get("collected_sites")
    if not isinstance(sites, Mapping) or not sites:
        return []
    rows = [[Raw(f"<code>{escape(str(site))}</code>"), _fmt(n)] for site, n in sites.items()]
    return [
        "<p>The connections SQLAlchemy's garbage-collector cleanup took back were taken here, as the app's "
        "pool view recorded each checkout: the lines that never closed them.</p>",
        table_html(["taken at", "connections"], rows, numeric={1}),
    ]


def _number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _lingering(data: RunData) -> str:
    rows = data.lingering
    if rows is None:
        return f'<p class="muted">{_file("lingering.csv")} is missing: no snapshot was taken after settle.</p>'
    if rows.empty:
        return "<p>No connection of the target was left open.</p>"
    said = ", ".join(f"{n} {escape(str(k).replace('_', ' '))}" for k, n in rows["kind"].value_counts().items())
    rank = rows["kind"].map({"in_transaction": 0, "held": 1, "never_reused": 2, "unsure": 3, "active": 4}).fillna(5)
    ordered = rows.assign(_rank=rank).sort_values(["_rank", "state_age_s"], ascending=[True, False])
    table, classes = [], []
    for r in ordered.head(MAX_ROWS).itertuples(index=False):
        kind, query = str(r.kind), str(r.query)
        table.append(
            [
                r.pid,
                Raw(
                    f'<span class="nw" title="wait event: {escape(str(r.wait_event_type) or "none")}">'
                    f"{escape(str(r.state))}</span>"
                ),
                Raw(f'<span class="kind {escape(kind)}">{escape(kind.replace("_", " "))}</span>'),
                _age(r.backend_age_s),
                _age(r.xact_age_s),
                _age(r.state_age_s),
                r.route or "",
                r.scenario or getattr(r, "likely", "") or "",
                r.request_id,
                r.application_name,
                _taken(r),
                Raw(f'<span title="{escape(query[:2000])}">{escape(_clip(query, 160))}</span>'),
            ]
        )
        classes.append(ROW_CLASS.get(kind, ""))
    head = [
        "pid",
        "state",
        "kind",
        "backend age",
        "transaction age",
        "state age",
        "route",
        "scenario (or likely request)",
        "request id",
        "application",
        "taken at",
        "last query",
    ]
    more = len(rows) - MAX_ROWS
    return (
        f"<p>{len(rows)} connection(s) still open: {said}. Held, in-transaction and never-reused connections (each served one request and no pool holds it) are leaks "
        "(red); unsure ones ran application SQL last in a pool that does not reset, so they may be (amber); "
        "pooled ones were reset by their pool and are a warm pool.</p>"
        + f'<div class="scroll">{table_html(head, table, numeric={0, 3, 4, 5}, classes=classes, cells={8: "id", 10: "q"})}'
        + "</div>"
        + (f'<p class="muted">… and {more} more in lingering.csv.</p>' if more > 0 else "")
    )


def _traffic(data: RunData) -> str:
    out, stats, leaks = [], data.stats, (data.summary or {}).get("scenarios") or {}
    if stats is not None and not stats.empty:
        table = scenario_table(stats)
        rows = [
            [
                name,
                _fmt(r.requests),
                _fmt(r.failures),
                _fmt(r.failure_pct, "{:.1f} %"),
                _fmt(r.rps, "{:,.1f}"),
                _fmt(r.fps, "{:,.1f}"),
                _fmt(r.p95),
                leaks.get(name, ""),
            ]
            for name, r in table.iterrows()
        ]
        classes = ["leak" if leaks.get(name) else "total" if name == "all" else "" for name in table.index]
        head = ["scenario", "requests", "failures", "failed", "req/s", "fail/s", "p95 ms", "leaked"]
        out.append("<h3>By scenario</h3>" + table_html(head, rows, numeric=range(1, 8), classes=classes))
        columns = ["Name", "Request Count", "Failure Count", "Median Response Time", "95%", "99%", "Max Response Time"]
        rows = [
            [r[0], *(_fmt(v) for v in r[1:-1]), _fmt(r[-1], "{:,.1f}")]
            for r in stats.loc[stats["Name"] != "Aggregated", [*columns, "Requests/s"]].head(MAX_ROWS).to_numpy()
        ]
        head = ["request", "requests", "failures", "median ms", "p95 ms", "p99 ms", "max ms", "req/s"]
        out.append("<h3>By request</h3>" + table_html(head, rows, numeric=range(1, 8)))
    else:
        out.append(f'<p class="muted">{_file("locust_stats.csv")} is missing: Locust wrote no totals.</p>')
    out += _hangups(data)
    out.append("<h3>Failures Locust recorded</h3>")
    if data.failures is None:
        out.append(f'<p class="muted">{_file("locust_failures.csv")} is missing.</p>')
    elif data.failures.empty:
        out.append("<p>None.</p>")
    else:
        failures = data.failures.sort_values("Occurrences", ascending=False).head(MAX_ROWS)
        rows = [[_fmt(r.Occurrences), r.Method, r.Name, _clip(str(r.Error), 300)] for r in failures.itertuples()]
        out.append(table_html(["count", "method", "request", "error"], rows, numeric={0}, cells={3: "q"}))
    if data.exceptions is not None and not data.exceptions.empty:
        rows = [
            [
                _fmt(r.Count),
                Raw(
                    f"{escape(str(r.Message))}<details><summary>traceback</summary>"
                    f"<pre>{escape(str(r.Traceback))}</pre></details>"
                ),
            ]
            for r in data.exceptions.head(50).itertuples()
        ]
        out.append("<h3>Exceptions in the Locust users</h3>" + table_html(["count", "exception"], rows, numeric={0}))
    out.append("<h3>Probe after settle</h3>" + _probe(data))
    return "\n".join(out)


def _findings(data: RunData) -> str:
    """Diagnosis, per-kind isolation, forecast and injected faults: shown only when the run has them."""
    sections = (
        _diagnosis_section,
        _checkouts_section,
        _busy_section,
        _holds_section,
        _isolation_section,
        _sweep_section,
        _forecast_section,
        _faults_section,
    )
    return "\n".join(part for section in sections for part in section(data))


def _diagnosis_section(data: RunData) -> list[str]:
    summary, parts = data.summary or {}, list[str]()
    diagnosis = summary.get("diagnosis") or []
    if diagnosis:
        rows = [[d["pattern"], d.get("evidence", ""), d.get("cause", ""), d["fix"]] for d in diagnosis]
        parts.append("<h2>Diagnosis</h2>" + table_html(["pattern", "evidence", "likely cause", "fix"], rows))
    return parts


def _checkouts_section(data: RunData) -> list[str]:
    summary, parts = data.summary or {}, list[str]()
    sites = summary.get("checkout_sites")
    if isinstance(sites, Mapping) and sites:
        rows = [[Raw(f"<code>{escape(str(site))}</code>"), _fmt(n)] for site, n in sites.items()]
        parts.append(
            "<h2>Checked out and never given back</h2><p>Where the app took the connections its pools still "
            "count checked out after settle, as its pool view recorded each checkout (innermost application "
            "frame; the lingering table below has the whole stack on hover).</p>"
            + table_html(["taken at", "connections"], rows, numeric={1})
        )
    return parts


def _busy_section(data: RunData) -> list[str]:
    summary, parts = data.summary or {}, list[str]()
    busy = telling([g for g in summary.get("waiting") or [] if isinstance(g, Mapping)])
    if busy:
        rows = [
            [
                g.get("what", ""),
                _fmt(g.get("count")),
                Raw(f"<code>{escape(str(g.get('at')))}</code>"),
                Raw(f"<code>{escape(str(g.get('waiting_in', '')))}</code>"),
            ]
            for g in busy
        ]
        parts.append(
            "<h2>Still busy after settle</h2><p>The service's tasks and threads still in its own code when "
            "settle ended, as its pool view saw them: handlers queued for a connection, or still working for "
            "clients that left (tasks waiting in the web framework on another task are left out).</p>"
            + table_html(["what", "how many", "at", "waiting in"], rows, numeric={1})
        )
    return parts


def _holds_section(data: RunData) -> list[str]:
    """How long each route held its connections during the load, and what it kept busy (Little's law)."""
    holds = (data.summary or {}).get("holds")
    if not isinstance(holds, Mapping) or not holds:
        return []
    limit = ((data.summary or {}).get("pool_view") or {}).get("limit")
    rows = [
        [
            Raw(f"<code>{escape(str(route))}</code>"),
            _fmt(h.get("count")),
            human_hold(float(h.get("p50_s") or 0)),
            human_hold(float(h.get("p95_s") or 0)),
            human_hold(float(h.get("max_s") or 0)),
            "" if h.get("busy") is None else f"{h['busy']:g}",
        ]
        for route, h in list(holds.items())[:MAX_ROWS]
        if isinstance(h, Mapping)
    ]
    return [
        "<h2>Connections held, by route</h2><p>How long each route's requests kept the connection they took "
        "during the load (from the app's pool view: each checkout to its return), and how many connections "
        "it kept out on average (its total hold time over the load's length)"
        + (f"; the app's pools give {escape(str(limit))}" if limit else "")
        + ". A route that keeps the pool busy needs shorter holds or fewer requests at once, not a bigger pool.</p>",
        table_html(["route", "holds", "p50", "p95", "longest", "busy on average"], rows, numeric={1, 5}),
    ]


def _isolation_section(data: RunData) -> list[str]:
    parts: list[str] = []
    isolation = data.run.get("isolation") or {}
    if isolation:
        rows = [
            [
                kind,
                Raw(f'<span class="{"ok" if r["verdict"] == "PASS" else "fail"}">{escape(r["verdict"])}</span>'),
                r["leaked"],
                r["requests"],
                ("≥ " if r.get("lower_bound") else "") + ("—" if r["per_1000"] is None else f"{r['per_1000']:g}"),
                "; ".join(f"{name}: {e['leaked']}/{e['requests']}" for name, e in r.get("endpoints", {}).items()),
            ]
            for kind, r in isolation.items()
        ]
        parts.append(
            "<h2>Each chaos kind alone (--isolate)</h2>"
            + table_html(
                ["kind", "verdict", "leaked", "requests", "leaked per 1,000", "by endpoint (leaked/requests)"],
                rows,
                numeric={2, 3, 4},
            )
        )
    return parts


def _sweep_section(data: RunData) -> list[str]:
    parts: list[str] = []
    sweep = data.run.get("sweep") or []
    if sweep:
        rows = [
            [
                f"{r['after_ms']:g} ms",
                Raw(f'<span class="{"ok" if r["verdict"] == "PASS" else "fail"}">{escape(r["verdict"])}</span>'),
                r["leaked"],
                r["requests"],
                ("≥ " if r.get("lower_bound") else "")
                + ("—" if r.get("probability") is None else f"{r['probability'] * 100:.2f} %"),
            ]
            for r in sweep
        ]
        parts.append(
            "<h2>Disconnect sweep: leak probability against hang-up delay</h2>"
            + table_html(
                ["client hangs up after", "verdict", "leaked", "requests", "leaked per request"],
                rows,
                numeric={2, 3, 4},
            )
            + '<p class="muted">≥: the pool ran dry during that cycle, so fewer leaks could happen than would have.</p>'
        )
    return parts


def _forecast_section(data: RunData) -> list[str]:
    summary, parts = data.summary or {}, list[str]()
    forecast = summary.get("forecast")
    if forecast:
        assumptions = "".join(f"<li>{escape(a)}</li>" for a in forecast.get("assumptions", []))
        rates = [
            [
                kind,
                r["leaked"],
                r["requests"],
                f"{r['rate'] * 1000:.1f}",
                f"{r['low'] * 1000:.1f}–{r['high'] * 1000:.1f}",
            ]
            for kind, r in forecast.get("rates", {}).items()
        ]
        parts.append(
            f"<h2>Forecast</h2><p><b>{escape(forecast['sentence'])}</b>.</p>"
            + table_html(["kind", "leaked", "requests", "per 1,000", "95 % range"], rates, numeric={1, 2, 3})
            + f'<p class="muted">Assumptions:</p><ul class="muted">{assumptions}</ul>'
        )
    return parts


def _faults_section(data: RunData) -> list[str]:
    parts: list[str] = []
    faults = data.run.get("faults") or []
    if faults:
        rows = [[f["fault"], utc(f.get("start")), f.get("detail") or "", f.get("error") or ""] for f in faults]
        parts.append("<h2>Injected faults</h2>" + table_html(["fault", "at (UTC)", "what happened", "error"], rows))
    return parts


def _probe(data: RunData) -> str:
    if data.probe is None:
        return f'<p class="muted">{_file("probe.csv")} is missing: the run never reached the probe.</p>'
    if data.probe.empty:
        return "<p>No probe request was made.</p>"
    ok = [str(v).strip().lower() in ("1", "1.0", "true") for v in data.probe["ok"]]  # drainwatch.judge.probe writes 1/0
    rows = [
        [
            utc(r.t),
            r.status,
            Raw(f'<span class="{"ok" if good else "fail"}">{"yes" if good else "no"}</span>'),
            _fmt(r.elapsed_ms, "{:,.1f}"),
            r.error,
        ]
        for r, good in zip(data.probe.itertuples(), ok)
    ]
    return table_html(["time (UTC)", "status", "ok", "ms", "error"], rows[:MAX_ROWS], numeric={3})


def _run(data: RunData) -> str:
    phases = [
        [name, utc(start), utc(end) if end else "unfinished", human_seconds(end - start) if end else ""]
        for name, (start, end) in data.phases.items()
    ]
    config = _flatten(data.run.get("config") or {})
    target = dict(data.run.get("target") or {})
    theirs = target.pop("versions", None) or {}
    where = _flatten({"target": target, "database": data.run.get("database") or {}})
    files = sorted(p.name for p in data.run_dir.iterdir() if p.is_file())
    return (
        '<div class="cols"><div><h3>Configuration</h3>'
        + _pairs(config)
        + "<h3>Target and database</h3>"
        + _pairs(where)
        + "</div><div><h3>Phases</h3>"
        + table_html(["phase", "start (UTC)", "end (UTC)", "length"], phases, numeric={3})
        + ("<h3>The service's versions</h3>" + _pairs(theirs) if theirs else "")
        + "<h3>drainwatch's own versions</h3>"
        + _pairs(data.run.get("versions") or {})
        + f'<h3>Files</h3><p class="muted">{escape(", ".join(files))}</p></div></div>'
    )


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and key != "mix":
            out |= _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, Mapping):
            out[prefix + key] = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            # The run directory is redacted already; the report makes sure again for itself.
            out[prefix + key] = redact_dsn(str(value)) if key == "dsn" and value else value
    return out


def _pairs(pairs: Mapping[str, Any]) -> str:
    if not pairs:
        return '<p class="muted">not recorded</p>'
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape('—' if v is None else str(v))}</td></tr>" for k, v in pairs.items()
    )
    return f"<table>{rows}</table>"


def table_html(
    head: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    numeric: Collection[int] = (),
    classes: Sequence[str] = (),
    cells: Mapping[int, str] | None = None,
) -> str:
    """A table; a cell is escaped unless it is ``Raw``. ``cells`` gives a column's td class."""
    column_class = dict(cells or {})

    def td(i: int, value: object) -> str:
        cls = " ".join(filter(None, ["n" if i in numeric else "", column_class.get(i, "")]))
        text = value if isinstance(value, Raw) else escape("" if _missing(value) else str(value))
        return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"

    top = "".join(
        f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>" for i, h in enumerate(head)
    )
    body = "".join(
        (f'<tr class="{classes[n]}">' if n < len(classes) else "<tr>")
        + "".join(td(i, v) for i, v in enumerate(row))
        + "</tr>"
        for n, row in enumerate(rows)
    )
    return f"<table><tr>{top}</tr>{body}</table>"


def _file(name: str) -> str:
    return f"<code>{escape(name)}</code>"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # a query's newlines and indentation waste the table's height
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("<NA>", "nan")


def _fmt(value: Any, spec: str = "{:,.0f}") -> str:
    return "" if _missing(value) else spec.format(float(value))


def _age(value: Any) -> str:
    return "" if _missing(value) else human_seconds(float(value))


def utc(unix: Any) -> str:
    return "" if _missing(unix) else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(unix)))
