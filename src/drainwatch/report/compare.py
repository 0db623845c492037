"""Comparing two runs, A before and B after a change (a migration, a fix, an upgrade).

    load_pair       two run folders → RunData; UsageError for one that is not a finished run
    compare_runs    A and B → rows: figure, A, B, the difference and B's judgement (pure)
    render_compare  the rows and both connection timelines → one self-contained page
    write_compare   all three and the page written: the one call the CLI makes

The leak figures decide the exit code: B worse than A on any of them is 1. They are the
verdict, the connections leaked, the time back to baseline after the load ("never" is worse
than any time), the connections idle in transaction after settle and the oldest transaction
seen idle during load and settle, and the probe. Counts are compared exactly; times within
max(1 s, 10 %) are the same, since a sample lands every 250 ms and a drain's timing wobbles
from run to run.

The traffic figures are context, judged but not deciding: the peak count idle in
transaction (how many transactions were in flight: a fixed service under more traffic has
more), the share of failed requests per scenario, p50/p95 latency and requests/s, all from
Locust's totals. Latency and throughput within 5 % are the same.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drainwatch.errors import EXIT_LEAK, EXIT_PASS, UsageError
from drainwatch.rundir import RUN_JSON

if TYPE_CHECKING:  # pandas and matplotlib are imported when a comparison is made, not with the CLI
    from rich.console import Console
    from rich.table import Table

    from drainwatch.report.rundata import RunData

COMPARE_HTML = "compare.html"
BETTER, WORSE, SAME, NA = "better", "worse", "same", "n/a"
VERDICT_RANK = {"PASS": 0, "SATURATED": 1, "LEAK": 2, "ERROR": 3}
SCENARIO_ORDER = ["steady", "disconnect", "timeout", "error"]
# Set-up that changes the figures by itself. Not the demo's variant: that is the change under test.
CONFIG_KEYS = [
    "target_url",
    "locustfile",
    "users",
    "warmup",
    "baseline",
    "duration",
    "settle",
    "interval",
    "mix",
    "tolerance",
]
FORMATS = {
    "count": "{:,.0f}",
    "s": "{:.1f} s",
    "ms": "{:,.0f} ms",
    "rps": "{:,.1f}/s",
    "pp": "{:.1f} pp",
    "%": "{:.1f} %",
}
RUN_HINT = "pass two run folders written by `drainwatch run`, like reports/<run-id>"


@dataclass(frozen=True)
class Row:
    figure: str
    a: str  # as a person reads it: "0.2 s", "never", "3/3 served"
    b: str
    diff: str  # B - A, or "" where a difference says nothing ("never", a verdict)
    judgement: str  # better, worse, same: B against A; n/a when a side lacks the figure
    decides: bool  # a leak figure: B worse here makes the exit code 1
    how: str = ""  # how it is measured, for the page


@dataclass
class Comparison:
    a: RunData
    b: RunData
    rows: list[Row]
    differences: list[str] = field(default_factory=list)  # how the two runs were set up differently

    @property
    def worse(self) -> list[Row]:
        """The leak figures on which B is worse than A."""
        return [r for r in self.rows if r.decides and r.judgement == WORSE]

    @property
    def exit_code(self) -> int:
        return EXIT_LEAK if self.worse else EXIT_PASS

    @property
    def headline(self) -> tuple[str, str]:
        """One word (WORSE, BETTER, SAME) and the sentence that explains it."""
        if self.worse:
            return "WORSE", "B is worse than A on " + _names(self.worse)
        better = [r for r in self.rows if r.decides and r.judgement == BETTER]
        if better:
            return "BETTER", f"B is better than A on {_names(better)}, and no worse on any leak figure"
        return "SAME", "B leaks no more and no less than A"


def _names(rows: list[Row]) -> str:
    return ", ".join(r.figure for r in rows)


def check_run_folder(path: Path) -> None:
    """Raises UsageError unless ``path`` looks like a run folder (cheap: before anything is read)."""
    if not path.is_dir():
        raise UsageError(f"{path} does not exist" if not path.exists() else f"{path} is not a folder", hint=RUN_HINT)
    if not (path / RUN_JSON).is_file():
        raise UsageError(f"{path} is not a drainwatch run folder (no run.json)", hint=RUN_HINT)


def load_pair(run_a: Path, run_b: Path) -> tuple[RunData, RunData]:
    """Read both run folders. Raises UsageError for a folder that is not a finished run."""
    from drainwatch.report.rundata import load_run

    for path in (run_a, run_b):
        check_run_folder(path)
    pair = []
    for path in (run_a, run_b):
        data = load_run(path)
        if not data.run:
            why = "; ".join(data.notes) or "it holds no record"
            raise UsageError(f"{path}/{RUN_JSON} cannot be read ({why})", hint=RUN_HINT)
        if not (data.summary or {}).get("verdict"):
            why = "summary.json is missing" if data.summary is None else f"the run did not finish: {data.status}"
            hint = f"compare finished runs; `drainwatch report {path}` shows what this one collected"
            raise UsageError(f"{path} has no verdict to compare ({why})", hint=hint)
        pair.append(data)
    return pair[0], pair[1]


def compare_runs(a: RunData, b: RunData) -> Comparison:
    """The figures that matter, side by side, with B's judgement against A."""
    rows = _leak_rows(a, b) + _traffic_rows(a, b)
    return Comparison(a=a, b=b, rows=rows, differences=_setup_differences(a, b))


def _leak_rows(a: RunData, b: RunData) -> list[Row]:
    sa, sb = a.summary or {}, b.summary or {}
    va, vb = str(sa.get("verdict")), str(sb.get("verdict"))
    rows = [
        Row(
            "verdict",
            va,
            vb,
            "",
            _judge(VERDICT_RANK.get(va), VERDICT_RANK.get(vb)),
            True,
            "PASS is better than SATURATED, SATURATED than LEAK, LEAK than ERROR",
        )
    ]
    rows.append(
        _row(
            "leaked connections",
            sa.get("leaked"),
            sb.get("leaked"),
            "count",
            decides=True,
            how="held or idle in transaction after settle, or over baseline and not in the pool",
        )
    )
    # "never" is worse than any time: infinity, shown as a word.
    ra, rb = (math.inf if s.get("recovery_s") is None else float(s["recovery_s"]) for s in (sa, sb))
    rows.append(
        _row(
            "back to baseline",
            ra,
            rb,
            "s",
            decides=True,
            floor=1.0,
            rel=0.10,
            how="from the end of the load to the first count at baseline; never is worse than any time",
        )
    )
    iit_a, iit_b = ((s.get("idle_in_transaction") or {}).get("count") for s in (sa, sb))
    rows.append(
        _row(
            "idle in transaction",
            iit_a,
            iit_b,
            "count",
            decides=True,
            how="connections still idle in a transaction after settle",
        )
    )
    rows.append(
        _row(
            "oldest in transaction",
            _under_load(a, "oldest_iit_s"),
            _under_load(b, "oldest_iit_s"),
            "s",
            decides=True,
            floor=1.0,
            rel=0.10,
            how="the longest a transaction sat idle, from the start of the load to the end of settle",
        )
    )
    pa, pb = (s.get("probe") or {} for s in (sa, sb))
    rows.append(
        Row(
            "probe",
            _probe_text(pa),
            _probe_text(pb),
            "",
            _judge(_probe_score(pa), _probe_score(pb), higher_is_better=True),
            True,
            "plain requests after settle: does the service still serve?",
        )
    )
    return rows


def _traffic_rows(a: RunData, b: RunData) -> list[Row]:
    from drainwatch.report.rundata import scenario_table

    rows = [
        _row(
            "peak in transaction",
            _under_load(a, "idle_in_transaction"),
            _under_load(b, "idle_in_transaction"),
            "count",
            floor=1.0,
            rel=0.10,
            how="most connections idle in transaction at once during load and settle: transactions in flight",
        )
    ]
    tables = [scenario_table(d.stats) if d.stats is not None and not d.stats.empty else None for d in (a, b)]
    names = {str(n) for t in tables if t is not None for n in t.index}
    order = {n: i for i, n in enumerate(SCENARIO_ORDER)}
    for name in sorted(names, key=lambda n: (n == "all", order.get(n, len(order)), n)):
        found = [t.loc[name] if t is not None and name in t.index else None for t in tables]
        share = [
            None if r is None or not r["requests"] else 100 * _number_in(r, "failures") / _number_in(r, "requests")
            for r in found
        ]
        diff = "" if share[0] is None or share[1] is None else _signed(share[1] - share[0], FORMATS["pp"])
        counts = ", ".join(
            f"{side} {r['failures']:,.0f} of {r['requests']:,.0f}" for side, r in zip("AB", found) if r is not None
        )
        how = ("all requests" if name == "all" else f"requests of the {name} scenario") + f" that failed: {counts}"
        rows.append(
            Row(
                f"failed: {name}",
                _show(share[0], FORMATS["%"]),
                _show(share[1], FORMATS["%"]),
                diff,
                _judge(share[0], share[1], floor=0.5, rel=0.05),
                False,
                how,
            )
        )
    agg = [_aggregated(d) for d in (a, b)]
    for column, label in (("50%", "latency p50"), ("95%", "latency p95")):
        rows.append(
            _row(
                label,
                agg[0].get(column),
                agg[1].get(column),
                "ms",
                rel=0.05,
                how=f"{column[:-1]}th percentile of all requests in the load (Locust's totals)",
            )
        )
    rows.append(
        _row(
            "requests/s",
            agg[0].get("Requests/s"),
            agg[1].get("Requests/s"),
            "rps",
            rel=0.05,
            higher_is_better=True,
            how="all requests in the load, per second",
        )
    )
    return rows


def _row(
    figure: str,
    a: Any,
    b: Any,
    unit: str,
    *,
    decides: bool = False,
    floor: float = 0.0,
    rel: float = 0.0,
    higher_is_better: bool = False,
    how: str = "",
) -> Row:
    """A numeric figure in ``unit`` (count, s, ms, rps). ``floor`` and ``rel`` are the tolerance:
    a difference within max(floor, rel × the larger of the two) is the same."""
    fa, fb = _number(a), _number(b)
    show = FORMATS[unit]
    diff = ""
    if fa is not None and fb is not None and not (math.isinf(fa) or math.isinf(fb)):
        diff = _signed(fb - fa, show)
        relative = _signed(100 * (fb - fa) / fa, "{:.0f}") if unit in ("ms", "rps") and fa > 0 else "0"
        if relative != "0":
            diff += f" (×{fb / fa:.1f})" if fb >= 2 * fa else f" ({relative} %)"
    judgement = _judge(fa, fb, floor=floor, rel=rel, higher_is_better=higher_is_better)
    return Row(figure, _show(fa, show), _show(fb, show), diff, judgement, decides, how)


def _show(value: float | None, spec: str) -> str:
    if value is None:
        return ""
    return "never" if math.isinf(value) else spec.format(value)


def _judge(
    a: float | None, b: float | None, *, floor: float = 0.0, rel: float = 0.0, higher_is_better: bool = False
) -> str:
    if a is None or b is None:
        return NA
    if a == b:
        return SAME
    finite = not (math.isinf(a) or math.isinf(b))
    if finite and abs(b - a) <= max(floor, rel * max(abs(a), abs(b))):
        return SAME
    return BETTER if (b > a) == higher_is_better else WORSE


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _under_load(data: RunData, column: str) -> float | None:
    """The highest reading of ``column`` from the load's start to the settle's end."""
    if data.samples is None or column not in data.samples:
        return None
    phases = data.phases
    if "load" not in phases or not len(data.samples):
        return None
    start = phases["load"][0]
    end = phases.get("settle", (start, None))[1] or float(data.samples["t"].iloc[-1])
    window = data.samples.loc[data.samples["t"].between(start, end), column].dropna()
    return float(window.max()) if len(window) else None


def _aggregated(data: RunData) -> dict[str, float]:
    if data.stats is None:
        return {}
    rows = data.stats[data.stats["Name"] == "Aggregated"]
    return {} if rows.empty else {str(k): v for k, v in rows.iloc[-1].items() if _number(v) is not None}


def _number_in(row: Any, column: str) -> float:
    """A number from a row of a Locust table (``Any``: pandas types a cell as a scalar or a Series)."""
    return float(row[column])


def _probe_score(probe: dict[str, Any]) -> float | None:
    """All served is 1, none 0; a target that is down is worse than one that does not answer."""
    if not probe:
        return None
    if probe.get("target_alive") is False:
        return -1.0
    attempts = int(probe.get("attempts") or 0)
    return int(probe.get("ok") or 0) / attempts if attempts else 0.0


def _probe_text(probe: dict[str, Any]) -> str:
    if not probe:
        return ""
    served = f"{probe.get('ok', 0)}/{probe.get('attempts', 0)} served"
    return served + (", target down" if probe.get("target_alive") is False else "")


def _signed(value: float, spec: str) -> str:
    """``+1.2 s``, ``−3``, or ``0`` when the difference rounds to nothing."""
    text = spec.format(abs(value))
    if not any(c in "123456789" for c in text):
        return "0"
    return ("+" if value > 0 else "−") + text


def _setup_differences(a: RunData, b: RunData) -> list[str]:
    ca, cb = (d.run.get("config") or {} for d in (a, b))
    out = []
    for key in CONFIG_KEYS:
        if ca.get(key) != cb.get(key):
            show = [
                ", ".join(f"{k}={v}" for k, v in c[key].items())
                if isinstance(c.get(key), dict)
                else "—"
                if c.get(key) is None
                else str(c.get(key))
                for c in (ca, cb)
            ]
            out.append(f"{key} {show[0]} → {show[1]}")
    return out


def render_compare(comparison: Comparison) -> str:
    """compare.html as a string: self-contained like report.html (inline style, base64 image)."""
    from drainwatch.report.figures import comparison_timeline
    from drainwatch.report.html import Raw, figure_html, page, table_html, utc

    a, b = comparison.a, comparison.b
    word, sentence = comparison.headline
    figure = comparison_timeline([(f"A · {_label(a)}", a), (f"B · {_label(b)}", b)])

    def table(rows: list[Row]) -> str:
        cells = [
            [
                Raw(f'<b>{escape(r.figure)}</b><br><span class="muted">{escape(r.how)}</span>'),
                r.a,
                r.b,
                r.diff,
                Raw(f'<span class="{SAME if r.judgement == NA else r.judgement}">{r.judgement}</span>'),
            ]
            for r in rows
        ]
        classes = ["leak" if r.decides and r.judgement == WORSE else "" for r in rows]
        return table_html(["figure", "A", "B", "B − A", "B vs A"], cells, numeric={1, 2, 3}, classes=classes)

    runs = [
        [
            name,
            d.run.get("run_id") or d.run_dir.name,
            (d.run.get("config") or {}).get("variant") or "",
            (d.summary or {}).get("verdict"),
            utc(span[0]) if (span := d.span()) else "",
            str(d.run_dir),
        ]
        for name, d in (("A", a), ("B", b))
    ]
    notes = [f"{name}: {note}" for name, d in (("A", a), ("B", b)) for note in d.notes]
    setup = ""
    if comparison.differences:
        setup = (
            '<div class="banner"><strong>The runs were set up differently:</strong> '
            + escape("; ".join(comparison.differences))
            + ". Their figures may differ for that reason alone.</div>"
        )
    css = {"WORSE": "leak", "BETTER": "pass"}.get(word, "none")
    body = "\n".join(
        [
            f"<h1>drainwatch compare <small>A {escape(_label(a))} → B {escape(_label(b))}</small></h1>",
            setup,
            '<div class="notes">Missing or unreadable: ' + "; ".join(escape(n) for n in notes) + ".</div>"
            if notes
            else "",
            f'<section class="verdict {css}"><div><div class="word">{word}</div></div><div><p>{escape(sentence)}.</p>'
            f'<p class="muted">Exit code {comparison.exit_code}: 1 when B is worse than A on a leak figure. Counts '
            "are compared exactly; times within max(1 s, 10 %), latency and requests/s within 5 %, "
            "failure shares within max(0.5 points, 5 %) are the same.</p></div></section>",
            "<h2>Leaks</h2>",
            table([r for r in comparison.rows if r.decides]),
            "<h2>Traffic during the load</h2>",
            '<p class="muted">Context: judged, but these do not decide the exit code.</p>',
            table([r for r in comparison.rows if not r.decides]),
            "<h2>Connections</h2>",
            figure_html(figure, "Connections by state of run A above run B, aligned on the start of each load"),
            "<h2>The two runs</h2>",
            table_html(["", "run", "variant", "verdict", "started (UTC)", "folder"], runs),
            f"<footer>Rendered by drainwatch from the two run folders alone, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.</footer>",
        ]
    )
    return page(f"{word} · drainwatch compare · {_label(a)} → {_label(b)}", body)


def _label(data: RunData) -> str:
    run_id = str(data.run.get("run_id") or data.run_dir.name)
    return f"{run_id} ({(data.summary or {}).get('verdict') or 'no verdict'})"


def write_compare(run_a: Path, run_b: Path, out: Path | None = None) -> tuple[Comparison, Path]:
    """Compare the runs in two folders and write the page: ``out``, or ``run_b/compare.html``;
    an existing folder as ``out`` gets ``compare.html`` inside.

    Raises UsageError for a folder that is not a finished run or a page that cannot be written there.
    """
    from drainwatch.report import write_page

    run_a, run_b = Path(run_a), Path(run_b)
    for path in (run_a, run_b):  # first: a missing B is named as such, not as a folder --out cannot write to
        check_run_folder(path)
    target = Path(out) if out is not None else run_b / COMPARE_HTML
    if target.is_dir():
        target = target / COMPARE_HTML
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise UsageError(
            f"cannot write {target}: {target.parent} is not a writable folder",
            hint="give --out a file in a folder that exists",
        )
    a, b = load_pair(run_a, run_b)
    comparison = compare_runs(a, b)
    try:
        write_page(target, render_compare(comparison))
    except OSError as exc:
        hint = "give --out another file"
        raise UsageError(f"cannot write {target} ({exc.strerror or exc})", hint=hint) from exc
    return comparison, target


def terminal_table(comparison: Comparison) -> Table:
    """The rows for a terminal (rich); text from the run folders is never read as markup."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    style = {BETTER: "green", WORSE: "red", SAME: "dim", NA: "dim"}
    table = Table(
        title=Text(f"A {_label(comparison.a)}  →  B {_label(comparison.b)}"),
        title_justify="left",
        caption="· context: judged, but does not decide the exit code",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("figure")
    for name in ("A", "B", "B − A"):
        table.add_column(name, justify="right")
    table.add_column("B vs A")
    for row in comparison.rows:
        bold = "bold " if row.decides and row.judgement == WORSE else ""
        table.add_row(
            Text(row.figure + ("" if row.decides else " ·")),
            Text(row.a),
            Text(row.b),
            Text(row.diff),
            Text(row.judgement, style=bold + style[row.judgement]),
        )
    return table


def print_comparison(console: Console, comparison: Comparison, page_path: Path) -> None:
    """What a person reads in the terminal: the table, the headline, where the page is."""
    from rich.text import Text

    word, sentence = comparison.headline
    console.print(terminal_table(comparison))
    if comparison.differences:
        console.print(Text.assemble(("set up differently: ", "yellow"), "; ".join(comparison.differences)))
    console.print(Text.assemble((word, "bold red" if word == "WORSE" else "bold green"), f"  {sentence}"))
    console.print(Text(f"compare: {page_path}"))
