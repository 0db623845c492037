"""What the terminal shows while a run goes: phase, time left, traffic, connections.

A rich live panel on a terminal; plain log lines every few seconds elsewhere (CI);
nothing with ``--quiet``. It reads the same files the report does (the collector's
samples, Locust's stats history), so it adds no load on the target or the database.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from drainwatch.judge.attribution import likely_sentence
from drainwatch.judge.verdict import Verdict
from drainwatch.report import words
from drainwatch.sample.collector import read_last_sample

LOG_EVERY = 5.0


def _last_aggregated(history: Path) -> dict[str, str] | None:
    try:
        with open(history, "rb") as handle:
            header = handle.readline().decode()
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 8192))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if ",Aggregated," in line:
            row = next(csv.reader(io.StringIO(line)))
            return dict(zip(next(csv.reader(io.StringIO(header))), row))
    return None


class Display:
    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.samples: Path | None = None
        self.history: Path | None = None
        self.baseline: float | None = None
        self.pool_limit: int | None = None
        self._phase = "starting"
        self._ends: float | None = None
        self._last_log = 0.0

    def phase(self, name: str, seconds: float | None = None, *, history: Path | None = None) -> None:
        self._phase = name
        self._ends = time.monotonic() + seconds if seconds else None
        self.history = history
        if not self.quiet and not self.console.is_terminal:
            self.console.print(
                f"[{name}] " + (f"{seconds:.0f}s" if seconds else "started"), highlight=False, markup=False
            )

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False)

    def notice(self, text: str) -> None:
        """A line the user must see, -q or not, on stderr (what drainwatch did on its own)."""
        print(f"drainwatch: {text}", file=sys.stderr, flush=True)

    def _status(self) -> tuple[str, str, str]:
        left = f"{max(0.0, self._ends - time.monotonic()):.0f}s left" if self._ends else ""
        sample = read_last_sample(self.samples) if self.samples else None
        if sample and sample.get("gap") == "1":
            conns = "database unreachable (gap)"
        elif sample:
            conns = (
                f"{sample['total']} conns: {sample['active']} active, {sample['idle']} idle, "
                f"{int(sample['idle_in_transaction']) + int(sample['idle_in_transaction_aborted'])} idle in tx"
            )
            if self.baseline is not None:
                conns += f" | baseline {self.baseline:.0f}"
            if self.pool_limit:
                conns += f" | pool limit {self.pool_limit}"
        else:
            conns = "no sample yet"
        traffic = ""
        row = _last_aggregated(self.history) if self.history else None
        if row:
            traffic = f"{float(row['Requests/s'] or 0):.1f} req/s, {float(row['Failures/s'] or 0):.1f} fail/s, {row['User Count']} users"
        return left, conns, traffic

    def _table(self) -> Table:
        left, conns, traffic = self._status()
        table = Table.grid(padding=(0, 2))
        table.add_row(f"[bold]{self._phase}[/]", left)
        table.add_row("connections", conns)
        if traffic:
            table.add_row("traffic", traffic)
        return table

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Display]:
        if self.quiet:
            yield self
            return
        if self.console.is_terminal:
            with Live(self._table(), console=self.console, refresh_per_second=4, transient=True) as live:
                task = asyncio.create_task(self._refresh(live))
                try:
                    yield self
                finally:
                    task.cancel()
            return
        task = asyncio.create_task(self._refresh(None))
        try:
            yield self
        finally:
            task.cancel()

    async def _refresh(self, live: Live | None) -> None:
        while True:
            await asyncio.sleep(0.5)
            if live is not None:
                live.update(self._table())
            elif time.monotonic() - self._last_log >= LOG_EVERY:
                self._last_log = time.monotonic()
                left, conns, traffic = self._status()
                self.console.print(
                    f"[{self._phase}{' ' + left if left else ''}] {conns}" + (f" | {traffic}" if traffic else ""),
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )


def print_verdict(console: Console, verdict: Verdict | None, run_dir: Path) -> None:
    """The short summary a person reads at the end of a run: the headline, the connection
    counts, then the facts ``summary.md`` states too (``report.words``), and where to look."""
    from rich.markup import escape
    from rich.panel import Panel

    if verdict is None:
        console.print(f"no verdict: the run did not finish. What it collected is in {escape(str(run_dir))}/")
        return
    said = _summary(verdict, run_dir)
    colour = {"PASS": "green", "LEAK": "red", "SATURATED": "dark_orange"}.get(verdict.outcome, "yellow")
    b, p, f = verdict.baseline, verdict.peak, verdict.final
    lines = [
        f"[bold {colour}]{verdict.outcome}[/]  " + escape("; ".join(verdict.reasons)),
        "",
        f"connections  baseline {b['total']:.0f} → peak {p['total']:.0f} → final {f['total']:.0f}"
        f"   (idle {f['idle']:.0f}, idle in transaction {f['idle_in_transaction'] + f['idle_in_transaction_aborted']:.0f},"
        f" active {f['active']:.0f})",
    ]
    for fact in words.facts(said, most=3):  # short labels in a column, long ones as "label: sentence"
        label = f"{fact.label:<12}" if len(fact.label) <= 12 else f"{fact.label}:"
        lines.append(f"{label} {escape(fact.plain)}")
    tagged = {k: v for k, v in verdict.scenarios.items() if k != "unknown"}
    if tagged:
        by = ", ".join(f"{k} {v}" for k, v in sorted(tagged.items(), key=lambda kv: -kv[1]))
        where = ", ".join(f"{k} {v}" for k, v in sorted(verdict.routes.items(), key=lambda kv: -kv[1]))
        lines.append(escape(f"left open by  {by}   (routes: {where})"))
    lines += [escape(line) for line in attribution_lines(verdict)]
    for item in said.get("diagnosis") or []:
        if item.get("cause"):
            line = f"diagnosis    {item['pattern']}: likely {item['cause']}. Fix: {item['fix']}."
        else:
            line = f"             {item['fix']}."
        lines.append(escape(line))
    lines.append(escape(f"report       {run_dir / 'report.html'}"))
    console.print(Panel("\n".join(lines), title="drainwatch verdict", border_style=colour, expand=False))


def _summary(verdict: Verdict, run_dir: Path) -> Mapping[str, Any]:
    """summary.json as the run wrote it (its forecast and diagnosis too); the verdict alone when it could not."""
    from drainwatch.rundir import SUMMARY_JSON, read_json

    try:
        found = read_json(run_dir / SUMMARY_JSON)
    except (OSError, ValueError):
        found = None
    if isinstance(found, dict) and found.get("verdict") == verdict.outcome:
        return found
    from drainwatch.judge.diagnosis import diagnose

    return {**verdict.to_dict(), "diagnosis": diagnose(verdict)}


def attribution_lines(verdict: Verdict) -> list[str]:
    """Leaked connections by the request most likely to have left them, and by statement."""
    found = verdict.attribution or {}
    lines = []
    if found.get("likely"):
        lines.append(f"most likely  {likely_sentence(found)}")
    for site, count in list((found.get("sites") or {}).items())[:3]:
        lines.append(f"taken at     {site} ({count} of {found['of']})")
    for statement, count in list((found.get("statements") or {}).items())[:3]:
        lines.append(f"statement    {count} × {statement}")
    return lines
