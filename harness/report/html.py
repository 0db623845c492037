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
from string import Template
from typing import Any

import pandas as pd

from harness import __version__
from harness.config import redact_dsn
from harness.report.figures import Timeline
from harness.report.load import RunData, scenario_table

MAX_ROWS = 300  # a table longer than this is not read by anyone; the CSV is beside the report
VERDICT_CLASS = {"PASS": "pass", "LEAK": "leak", "ERROR": "error"}
CHECK_TITLES = {"drain": "Connections drained", "idle_in_transaction": "Nothing idle in a transaction",
                "held_connections": "No connection still held", "probe": "Service still serves"}  # fmt: skip
LEAK_KINDS = ("held", "in_transaction")

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
:root { --pass: #2b8a3e; --leak: #c92a2a; --error: #d9480f; --none: #868e96; --line: #dee2e6; --muted: #6c757d; }
* { box-sizing: border-box; }
body { margin: 0; background: #f8f9fa; color: #212529;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 2px; } h1 small { color: var(--muted); font-weight: 400; }
h2 { font-size: 18px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 8px; }
.meta, .muted, figcaption { color: var(--muted); font-size: 13.5px; }
.banner { margin: 16px 0; padding: 12px 16px; border-radius: 6px; border-left: 6px solid var(--error);
  background: #fff4e6; } .banner strong { color: var(--error); }
.notes { margin: 12px 0; padding: 8px 16px; background: #f1f3f5; border-radius: 6px; font-size: 13.5px; }
.verdict { display: grid; grid-template-columns: 230px 1fr; gap: 24px; margin-top: 18px; padding: 20px 24px;
  background: #fff; border: 1px solid var(--line); border-top: 8px solid var(--c); border-radius: 8px; }
.verdict.pass { --c: var(--pass); } .verdict.leak { --c: var(--leak); } .verdict.error { --c: var(--error); }
.verdict.none { --c: var(--none); }
.verdict.none .word { font-size: 38px; }
.word { font-size: 54px; font-weight: 800; letter-spacing: 1px; color: var(--c); line-height: 1.1; }
.reasons { margin: 8px 0 0; padding-left: 18px; } .reasons li { margin: 3px 0; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
.tile { padding: 10px 12px; background: #f8f9fa; border-radius: 6px; }
.tile b { display: block; font-size: 22px; } .tile span { color: var(--muted); font-size: 13px; }
.tile.bad b { color: var(--leak); } .tile.good b { color: var(--pass); }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13.5px; margin: 6px 0 4px; }
th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.leak td { background: #fff5f5; } tr.leak td:first-child { box-shadow: inset 4px 0 var(--leak); }
code, pre, td.q { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
td.q { max-width: 520px; overflow-wrap: anywhere; color: #495057; }
pre { white-space: pre-wrap; margin: 4px 0; }
.nw { white-space: nowrap; } .where { margin: 10px 0 0; } tr.total td { font-weight: 700; }
.ok { color: var(--pass); font-weight: 700; } .fail { color: var(--leak); font-weight: 700; }
.kind { padding: 1px 7px; border-radius: 9px; background: #e9ecef; font-size: 12px; white-space: nowrap; }
.kind.held, .kind.in_transaction { background: var(--leak); color: #fff; }
figure { margin: 0; padding: 12px; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
figure img { display: block; width: 100%; height: auto; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 0 28px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
@media (max-width: 760px) { .verdict { grid-template-columns: 1fr; } }
</style></head>
<body><main>
$body
</main></body></html>
""")


def render_html(data: RunData, figure: Timeline | None) -> str:
    """The whole page as a string."""
    run_id = data.run.get("run_id") or (data.summary or {}).get("run_id") or data.run_dir.name
    verdict = (data.summary or {}).get("verdict") or "NO VERDICT"
    body = "\n".join([
        f"<h1>drainwatch report <small>{escape(str(run_id))}</small></h1>",
        f'<p class="meta">{_meta(data)}</p>',
        _banner(data),
        _verdict(data),
        "<h2>Timeline</h2>",
        _figure(figure),
        "<h2>Connections still open after settle</h2>",
        _lingering(data),
        "<h2>Traffic</h2>",
        _traffic(data),
        "<h2>Run</h2>",
        _run(data),
        f'<footer>Rendered by drainwatch {escape(__version__)} from the run directory alone, '
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.</footer>",
    ])  # fmt: skip
    return PAGE.substitute(title=escape(f"{verdict} · drainwatch · {run_id}"), body=body)


def _meta(data: RunData) -> str:
    config = data.run.get("config") or {}
    parts = [f"status {_b(data.status)}"]
    if config.get("variant"):
        parts.append(f"variant {_b(config['variant'])}")
    if config.get("users"):
        parts.append(f"{_b(config['users'])} users")
    span = data.span()
    if span:
        parts.append(f"started {_b(_utc(span[0]))}, ran {_b(_duration(span[1] - span[0]))}")
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
        why = (f"{_file('summary.json')} is missing" if s is None
               else "; ".join(escape(str(r)) for r in s.get("reasons") or []) or "the run was not judged")  # fmt: skip
        return ('<section class="verdict none"><div><div class="word">NO VERDICT</div></div>'
                f"<div><p>{why}. The timeline and tables below show what was collected.</p></div></section>")  # fmt: skip
    word = str(s.get("verdict") or "?")
    leaked = int(s.get("leaked") or 0)
    by_kind = s.get("leaked_by_kind") or {}
    kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in by_kind.items() if n)
    recovery = s.get("recovery_s")
    back = f"after {_duration(recovery)}" if recovery is not None else "never"
    probe = s.get("probe") or {}
    probe_text = f"{probe.get('ok', 0)}/{probe.get('attempts', 0)} served"
    if probe.get("target_alive") is False:
        probe_text += ", target down"
    iit = s.get("idle_in_transaction") or {}
    levels = [(s.get(k) or {}).get("total") for k in ("baseline", "peak", "final")]
    scenarios = s.get("scenarios") or {}
    tiles = [
        _tile(leaked, "leaked connections" + (f" ({kinds})" if kinds else ""), bad=leaked > 0),
        _tile(back, "back to baseline after the load", bad=recovery is None),
        _tile(probe_text, "probe after settle", bad=not probe.get("passed", False)),
        _tile(" → ".join("?" if v is None else f"{v:g}" for v in levels), "connections baseline → peak → final"),
        _tile(iit.get("count", 0), f"idle in transaction, oldest {_duration(iit.get('oldest_s') or 0)}",
              bad=bool(iit.get("count"))),
    ]  # fmt: skip
    checks = "".join(
        f'<tr><td class="{"ok" if c.get("passed") else "fail"} nw">{"✓ pass" if c.get("passed") else "✗ fail"}</td>'
        f"<td>{escape(CHECK_TITLES.get(c.get('name', ''), str(c.get('name'))))}</td>"
        f"<td>{escape(str(c.get('detail', '')))}</td></tr>"
        for c in s.get("checks") or []
    )
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in s.get("reasons") or [])
    where = "; ".join(
        f"by {what}: " + ", ".join(f"{escape(str(k))} <b>{escape(str(v))}</b>" for k, v in counts.items())
        for what, counts in (("scenario", s.get("scenarios") or {}), ("route", s.get("routes") or {}))
        if counts
    )
    return (
        f'<section class="verdict {VERDICT_CLASS.get(word, "none")}">'
        f'<div><div class="word">{escape(word)}</div><ul class="reasons">{reasons}</ul></div>'
        f'<div><div class="tiles">{"".join(tiles)}</div>'
        + (f'<p class="where">Leaks {where}.</p>' if where else "")
        + f"<table><tr><th>result</th><th>check</th><th>what was seen</th></tr>{checks}</table>"
        f'<p class="muted">Tolerance {escape(str(s.get("tolerance", 0)))} connection(s) over baseline.</p>'
        "</div></section>"
    )


def _tile(value: object, label: str, *, bad: bool | None = None) -> str:
    cls = "" if bad is None else (" bad" if bad else " good")
    return f'<div class="tile{cls}"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def _figure(figure: Timeline | None) -> str:
    if figure is None:
        return '<p class="muted">No time series was recorded (no samples.csv, no Locust history).</p>'
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="Timeline: connections by state, requests and '
        f'failures per scenario, latency"><figcaption>{escape(figure.caption)}</figcaption></figure>'
    )


def _lingering(data: RunData) -> str:
    rows = data.lingering
    if rows is None:
        return f'<p class="muted">{_file("lingering.csv")} is missing: no snapshot was taken after settle.</p>'
    if rows.empty:
        return "<p>No connection of the target was left open.</p>"
    counts = rows["kind"].value_counts()
    said = ", ".join(f"{n} {escape(str(k).replace('_', ' '))}" for k, n in counts.items())
    rank = rows["kind"].map({"in_transaction": 0, "held": 1, "active": 2}).fillna(3)
    ordered = rows.assign(_rank=rank).sort_values(["_rank", "state_age_s"], ascending=[True, False])
    columns = ["pid", "state", "kind", "backend age", "transaction age", "state age", "route", "scenario",
               "request id", "application", "wait", "last query"]  # fmt: skip
    body = []
    for row in ordered.head(MAX_ROWS).itertuples(index=False):
        leak = row.kind in LEAK_KINDS
        query = str(row.query)
        body.append(
            f'<tr class="{"leak" if leak else ""}"><td class="n">{escape(str(row.pid))}</td>'
            f'<td class="nw">{escape(str(row.state))}</td>'
            f'<td><span class="kind {escape(str(row.kind))}">{escape(str(row.kind).replace("_", " "))}</span></td>'
            + "".join(f'<td class="n">{_age(v)}</td>' for v in (row.backend_age_s, row.xact_age_s, row.state_age_s))
            + "".join(f"<td>{escape(str(v))}</td>" for v in (row.route, row.scenario, row.request_id,
                                                             row.application_name, row.wait_event_type))  # fmt: skip
            + f'<td class="q" title="{escape(query[:2000])}">{escape(_clip(query, 160))}</td></tr>'
        )
    more = len(rows) - MAX_ROWS
    return (
        f"<p>{len(rows)} connection(s) still open: {said}. Held and in-transaction connections are leaks "
        "(highlighted); pooled ones were reset by their pool and are a warm pool.</p>"
        + _table(columns, body, numeric={0, 3, 4, 5})
        + (f'<p class="muted">… and {more} more in lingering.csv.</p>' if more > 0 else "")
    )


def _traffic(data: RunData) -> str:
    out = []
    leaks = (data.summary or {}).get("scenarios") or {}
    if data.stats is not None and not data.stats.empty:
        table = scenario_table(data.stats)
        body = [
            f'<tr class="{"leak" if leaks.get(name) else "total" if name == "all" else ""}"><td>{escape(str(name))}</td>'
            + "".join(f'<td class="n">{v}</td>' for v in (_int(r.requests), _int(r.failures), _pct(r.failure_pct),
                                                         _num(r.rps), _num(r.fps), _int(r.p95)))  # fmt: skip
            + f'<td class="n">{escape(str(leaks.get(name, "")))}</td></tr>'
            for name, r in table.iterrows()
        ]
        out.append("<h3>By scenario</h3>" + _table(
            ["scenario", "requests", "failures", "failed", "req/s", "fail/s", "p95 ms", "leaked"], body,
            numeric={1, 2, 3, 4, 5, 6, 7}))  # fmt: skip
        rows = data.stats[data.stats["Name"] != "Aggregated"]
        body = [
            f"<tr><td>{escape(str(r['Name']))}</td>"
            + "".join(f'<td class="n">{v}</td>' for v in (_int(r["Request Count"]), _int(r["Failure Count"]),
                      _int(r["Median Response Time"]), _int(r["95%"]), _int(r["99%"]), _int(r["Max Response Time"]),
                      _num(r["Requests/s"])))  # fmt: skip
            + "</tr>"
            for _, r in rows.head(MAX_ROWS).iterrows()
        ]
        out.append("<h3>By request</h3>" + _table(
            ["request", "requests", "failures", "median ms", "p95 ms", "p99 ms", "max ms", "req/s"], body,
            numeric=set(range(1, 8))))  # fmt: skip
    else:
        out.append(f'<p class="muted">{_file("locust_stats.csv")} is missing: Locust wrote no totals.</p>')
    out.append("<h3>Failures Locust recorded</h3>")
    if data.failures is None:
        out.append(f'<p class="muted">{_file("locust_failures.csv")} is missing.</p>')
    elif data.failures.empty:
        out.append("<p>None.</p>")
    else:
        failures = data.failures.sort_values("Occurrences", ascending=False)
        body = [
            f"<tr><td class=\"n\">{_int(r['Occurrences'])}</td><td>{escape(str(r['Method']))}</td>"
            f"<td>{escape(str(r['Name']))}</td><td class=\"q\">{escape(_clip(str(r['Error']), 300))}</td></tr>"
            for _, r in failures.head(MAX_ROWS).iterrows()
        ]
        out.append(_table(["count", "method", "request", "error"], body, numeric={0}))
    if data.exceptions is not None and not data.exceptions.empty:
        body = [
            f"<tr><td class=\"n\">{_int(r['Count'])}</td><td>{escape(str(r['Message']))}"
            f"<details><summary>traceback</summary><pre>{escape(str(r['Traceback']))}</pre></details></td></tr>"
            for _, r in data.exceptions.head(50).iterrows()
        ]
        out.append("<h3>Exceptions in the Locust users</h3>" + _table(["count", "exception"], body, numeric={0}))
    out.append("<h3>Probe after settle</h3>" + _probe(data))
    return "\n".join(out)


def _probe(data: RunData) -> str:
    if data.probe is None:
        return f'<p class="muted">{_file("probe.csv")} is missing: the run never reached the probe.</p>'
    if data.probe.empty:
        return "<p>No probe request was made.</p>"
    body = [
        f"<tr><td>{escape(_utc(r['t']))}</td><td>{escape(str(r['status']))}</td>"
        f"<td class=\"{'ok' if _truthy(r['ok']) else 'fail'}\">{'yes' if _truthy(r['ok']) else 'no'}</td>"
        f"<td class=\"n\">{_num(r['elapsed_ms'])}</td><td>{escape(str(r['error']))}</td></tr>"
        for _, r in data.probe.head(MAX_ROWS).iterrows()
    ]
    return _table(["time (UTC)", "status", "ok", "ms", "error"], body, numeric={3})


def _run(data: RunData) -> str:
    phases = [
        f"<tr><td>{escape(name)}</td><td>{_utc(start)}</td><td>{_utc(end) if end else 'unfinished'}</td>"
        f"<td class=\"n\">{_duration(end - start) if end else ''}</td></tr>"
        for name, (start, end) in data.phases.items()
    ]
    config = _flatten(data.run.get("config") or {})
    where = _flatten({"target": data.run.get("target") or {}, "database": data.run.get("database") or {}})
    files = sorted(p.name for p in data.run_dir.iterdir() if p.is_file())
    return (
        '<div class="cols"><div><h3>Configuration</h3>' + _pairs(config)
        + "<h3>Target and database</h3>" + _pairs(where) + "</div><div><h3>Phases</h3>"
        + _table(["phase", "start (UTC)", "end (UTC)", "length"], phases, numeric={3})
        + "<h3>Versions</h3>" + _pairs(data.run.get("versions") or {})
        + f"<h3>Files</h3><p class=\"muted\">{escape(', '.join(files))}</p></div></div>"
    )  # fmt: skip


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and key != "mix":
            out |= _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, Mapping):
            out[prefix + key] = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            # The run directory is redacted already; the report says so again for itself.
            out[prefix + key] = redact_dsn(str(value)) if key == "dsn" and value else value
    return out


def _pairs(pairs: Mapping[str, Any]) -> str:
    if not pairs:
        return '<p class="muted">not recorded</p>'
    body = [f"<tr><th>{escape(str(k))}</th><td>{escape('—' if v is None else str(v))}</td></tr>"
            for k, v in pairs.items()]  # fmt: skip
    return f"<table>{''.join(body)}</table>"


def _table(columns: Sequence[str], rows: Iterable[str], numeric: Collection[int] = ()) -> str:
    head = "".join(f'<th class="{"n" if i in numeric else ""}">{escape(c)}</th>' for i, c in enumerate(columns))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _file(name: str) -> str:
    return f"<code>{escape(name)}</code>"


def _b(value: object) -> str:
    return f"<b>{escape(str(value))}</b>"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # a query's newlines and indentation waste the table's height
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "1.0", "true", "yes")  # harness.probe writes 1/0


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _int(value: object) -> str:
    return "" if _missing(value) else f"{float(value):,.0f}"  # type: ignore[arg-type]


def _num(value: object) -> str:
    return "" if _missing(value) else f"{float(value):,.1f}"  # type: ignore[arg-type]


def _pct(value: object) -> str:
    return "" if _missing(value) else f"{float(value):.1f} %"  # type: ignore[arg-type]


def _age(value: object) -> str:
    return "" if _missing(value) else escape(_duration(float(value)))  # type: ignore[arg-type]


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _utc(unix: float) -> str:
    if _missing(unix):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(unix)))
