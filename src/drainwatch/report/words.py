"""The verdict's words, written once: what a finished run found, as labelled sentences.

The console panel and ``summary.md`` render these facts; neither derives a sentence of its own.
They read ``summary.json``'s shape (``outputs.summary``), so a report made later from a run
folder says what the run said when it ended. Parts of a sentence that are code (a call site,
a check's name) are ``Code``, so each renderer can set them as it sets code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drainwatch.judge.hangups import sentence as hangup_sentence
from drainwatch.judge.verdict import holds_busy, holds_sentence, recovery_sentence, telling, waiting_sentence
from drainwatch.sample.service_log import describe
from drainwatch.units import human_seconds

Summary = Mapping[str, Any]  # summary.json as written (outputs.summary) or read back


@dataclass(frozen=True)
class Code:
    """A part of a sentence that is code: set as code in Markdown, plain on a terminal."""

    text: str


Span = str | Code


@dataclass(frozen=True)
class Fact:
    label: str  # what the sentence is about: "leaked", "probe", "hang-ups"
    spans: tuple[Span, ...]

    @property
    def plain(self) -> str:
        return "".join(span.text if isinstance(span, Code) else span for span in self.spans)


def leaked_count(s: Summary) -> str:
    """The leaked count, or "at least N" when only the probe or the server saw the leak."""
    leaked = int(s.get("leaked") or 0)
    return str(leaked) if s.get("leaked_exact", True) else f"at least {max(1, leaked)}"


def facts(s: Summary, *, most: int = 5) -> list[Fact]:
    """Every fact a finished run states, in the order a reader wants them; ``most`` caps each list of sites."""
    if not s.get("verdict"):
        return []
    return [Fact(label, tuple(spans)) for label, spans in _facts(s, most) if spans]


def _facts(s: Summary, most: int) -> Iterator[tuple[str, Sequence[Span]]]:
    yield "leaked", [_leaked(s)]
    final, baseline = (s.get("final") or {}).get("total"), (s.get("baseline") or {}).get("total")
    yield "back to baseline", [recovery_sentence(s.get("recovery_s"), final, baseline)]
    probe = s.get("probe") or {}
    if probe:
        detail = f": {probe['detail']}" if probe.get("detail") else ""
        yield "probe", [f"{probe.get('ok')}/{probe.get('attempts')} served{detail}"]
    if view := s.get("pool_view"):
        yield (
            "pool view",
            [
                f"the app's pools count {view.get('checked_out')} checked out, {view.get('idle')} idle "
                f"(limit {view.get('limit')})"
            ],
        )
    zombie = s.get("zombie") or {}
    if zombie.get("peak_active"):
        lasted = human_seconds(zombie.get("lasted_s") or 0)
        yield "zombie work", [f"{zombie['peak_active']} backend(s) still active up to {lasted} after traffic stopped"]
    yield from _limits(s)
    holds, limit = _mapping(s.get("holds")), (s.get("pool_view") or {}).get("limit")
    matter = s.get("verdict") == "SATURATED" or holds_busy(holds, limit)
    if matter and (held := holds_sentence(holds, limit)):
        yield "held longest", [held]
    for label, row in _mapping(s.get("hangups")).items():
        if isinstance(row, Mapping):
            yield "hang-ups", [hangup_sentence(str(label), row)]
    yield from _sites(s, most)
    busy = telling([g for g in s.get("waiting") or [] if isinstance(g, Mapping)])
    yield "still busy after settle", _joined([waiting_sentence(g)] for g in busy[:most])
    logged = _mapping(s.get("service_warnings"))
    yield "the service logged", _joined([f"{_count(n)} × {describe(str(kind))}"] for kind, n in logged.items())
    gaps = s.get("gaps") or {}
    if gaps.get("count"):
        yield "database unreachable", [f"{human_seconds(gaps.get('seconds') or 0)} ({gaps['count']} missed samples)"]
    if s.get("evidence") and s.get("verdict") != "PASS":  # a PASS is decided by every check
        yield "decided by", _joined(([Code(str(e))] for e in s["evidence"]), sep=", ")
    forecast = s.get("forecast")
    if isinstance(forecast, Mapping) and forecast.get("sentence"):
        yield "forecast", [str(forecast["sentence"])]


def _leaked(s: Summary) -> str:
    by_kind = s.get("leaked_by_kind") or {}
    parts = [f"{by_kind.get('held', 0)} held idle", f"{by_kind.get('in_transaction', 0)} idle in transaction"]
    if by_kind.get("single_use"):
        parts.append(f"{by_kind['single_use']} left open after one request")
    if by_kind.get("invisible"):
        parts.append(f"{by_kind['invisible']} gone from PostgreSQL but counted by the pool")
    held_for = f", held for up to {human_seconds(s['oldest_held_s'])}" if s.get("oldest_held_s") else ""
    leaked = leaked_count(s)
    if s.get("leaked") or s.get("verdict") == "LEAK":
        leaked += f" ({', '.join(parts)}{held_for})"
    return f"{leaked}; {s.get('pooled_idle', 0)} idle back in their pool"


def _limits(s: Summary) -> Iterator[tuple[str, Sequence[Span]]]:
    if server := s.get("server"):
        yield (
            "server",
            [
                f"peak {server.get('peak')} of {server.get('usable')} usable connections "
                f"(max_connections {server.get('max_connections')})"
            ],
        )
    elif s.get("pool_limit") or s.get("max_connections"):
        yield "limits", [f"pool limit {s.get('pool_limit') or '?'}, max_connections {s.get('max_connections') or '?'}"]


def _sites(s: Summary, most: int) -> Iterator[tuple[str, Sequence[Span]]]:
    for key, label in (
        ("checkout_sites", "checked out and never given back"),
        ("collected_sites", "never closed, taken back by the garbage collector"),
    ):
        sites = list(_mapping(s.get(key)).items())[:most]
        yield label, _joined([f"{_count(n)} × at ", Code(str(site))] for site, n in sites)


def _joined(groups: Iterator[list[Span]] | Sequence[list[Span]], sep: str = "; ") -> list[Span]:
    out: list[Span] = []
    for group in groups:
        out += [sep, *group] if out else group
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f}"
