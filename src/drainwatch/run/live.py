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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from drainwatch.judge.attribution import likely_sentence
from drainwatch.judge.hangups import sentence as hangup_sentence
from drainwatch.judge.verdict import Verdict, recovery_sentence, telling, waiting_sentence
from drainwatch.sample.collector import read_last_sample
from drainwatch.units import human_seconds

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
    """The short summary a person reads at the end of a run."""
    from rich.panel import Panel

    if verdict is None:
        console.print(f"no verdict: the run did not finish. What it collected is in {run_dir}/")
        return
    colour = {"PASS": "green", "LEAK": "red", "SATURATED": "dark_orange"}.get(verdict.outcome, "yellow")
    b, p, f = verdict.baseline, verdict.peak, verdict.final
    lines = [
        f"[bold {colour}]{verdict.outcome}[/]  " + "; ".join(verdict.reasons),
        "",
        f"connections  baseline {b['total']:.0f} → peak {p['total']:.0f} → final {f['total']:.0f}"
        f"   (idle {f['idle']:.0f}, idle in transaction {f['idle_in_transaction'] + f['idle_in_transaction_aborted']:.0f},"
        f" active {f['active']:.0f})",
        f"leaked       {leaked_text(verdict)}  (held idle {verdict.leaked_by_kind.get('held', 0)}, "
        f"idle in transaction {verdict.leaked_by_kind.get('in_transaction', 0)}, "
        + (f"left after one request {n}, " if (n := verdict.leaked_by_kind.get("single_use", 0)) else "")
        + "held for up to "
        f"{human_seconds(verdict.oldest_held_s)}); pooled idle {verdict.pooled_idle}",
        "count back to baseline  "
        + recovery_sentence(verdict.recovery_s, verdict.final.get("total"), verdict.baseline.get("total")),
        f"probe        {verdict.probe['ok']}/{verdict.probe['attempts']} served"
        + (f" — {verdict.probe['detail']}" if verdict.probe.get("detail") else ""),
    ]
    if verdict.pool_view is not None:
        lines.append(
            f"pool view    the app's pools count {verdict.pool_view['checked_out']} checked out, "
            f"{verdict.pool_view['idle']} idle (limit {verdict.pool_view['limit']})"
        )
    if verdict.zombie["peak_active"]:
        lines.append(
            f"zombie work  {verdict.zombie['peak_active']} backend(s) still active up to "
            f"{verdict.zombie['lasted_s']:.1f}s after traffic stopped"
        )
    for label, row in verdict.hangups.items():
        lines.append(f"hang-ups     {hangup_sentence(label, row)}")
    lines.append("decided by   " + ", ".join(verdict.evidence))
    if verdict.server is not None and verdict.server.get("full"):
        lines.append(f"server       {next(c.detail for c in verdict.checks if c.name == 'server_limit')}")
    tagged = {k: v for k, v in verdict.scenarios.items() if k != "unknown"}
    if tagged:
        by = ", ".join(f"{k} {v}" for k, v in sorted(tagged.items(), key=lambda kv: -kv[1]))
        where = ", ".join(f"{k} {v}" for k, v in sorted(verdict.routes.items(), key=lambda kv: -kv[1]))
        lines.append(f"left open by  {by}   (routes: {where})")
    lines += attribution_lines(verdict)
    for site, count in list(verdict.checkout_sites.items())[:3]:
        lines.append(f"checked out  {count} × at {site}, never given back (the app's pool view)")
    for site, count in list(verdict.collected_sites.items())[:3]:
        lines.append(f"never closed {count} × at {site}: the garbage collector took them back (the app's pool view)")
    for group in telling(verdict.waiting)[:3]:
        lines.append(f"still busy   {waiting_sentence(group)}")
    from drainwatch.judge.diagnosis import diagnose

    for item in diagnose(verdict):
        if item["cause"]:
            lines.append(f"diagnosis    {item['pattern']}: likely {item['cause']}. Fix: {item['fix']}.")
        else:
            lines.append(f"             {item['fix']}.")
    forecast = _read_forecast(run_dir)
    if forecast:
        lines.append(f"forecast     {forecast}")
    lines.append(f"report       {run_dir / 'report.html'}")
    console.print(Panel("\n".join(lines), title="drainwatch verdict", border_style=colour, expand=False))


def leaked_text(verdict: Verdict) -> str:
    """The leaked count, or "unknown, at least N" when only the probe or the server saw the leak."""
    return str(verdict.leaked) if verdict.leaked_exact else f"unknown, at least {max(1, verdict.leaked)}"


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


def _read_forecast(run_dir: Path) -> str | None:
    try:
        from drainwatch.rundir import SUMMARY_JSON, read_json

        forecast = read_json(run_dir / SUMMARY_JSON).get("forecast")
    except (OSError, ValueError):
        return None
    return forecast["sentence"] if forecast else None
