"""Who left each connection open, when the application does not tag its SQL.

Two clues, both from what drainwatch recorded itself:

- the connection's last statement, normalised (literals out, whitespace folded), so nine
  connections left by one code path group as ``9 × SELECT count(*) … FROM items``;
- the requests in flight when its state last changed (``requests-*.csv``, written by the
  scenarios): the request that ran the last statement on a connection was running then.

SQL tags (``/* drainwatch route=… */``) stay the exact path when an app has them.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from drainwatch.judge.forensics import HELD, UNSURE

_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w$])-?\d+(?:\.\d+)?\b")
_PARAM = re.compile(r"\$\d+|%\(\w+\)s|%s|:\w+\b")
_SPACE = re.compile(r"\s+")
SLACK = 0.003  # seconds of slack between Locust's clock and PostgreSQL's (one machine: the same clock)


def normalise(query: str, width: int = 90) -> str:
    """``SELECT * FROM t WHERE id = 42`` → ``SELECT * FROM t WHERE id = ?``, on one line, shortened."""
    text = _COMMENT.sub(" ", query)
    text = _STRING.sub("?", text)
    text = _PARAM.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


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


def _label(request: Mapping[str, Any]) -> str:
    return f"{request.get('scenario', '')} {request.get('method', '')} {request.get('name', '')}".strip()


def in_flight(requests: Sequence[Mapping[str, Any]], t: float) -> list[Mapping[str, Any]]:
    """The requests running at unix time ``t``."""
    return [r for r in requests if r["start"] - SLACK <= t <= r["end"] + SLACK]


def attribute(rows: Sequence[dict[str, Any]], requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``statement`` (normalised) and ``likely``: the tagged request when the app tags
    its SQL, else the request kind in flight at the most of the leaked connections' last state
    changes (the kind that leaks is running at every one of its leaks; the others only by chance),
    ties going to the kind whose request started last before the change."""
    by_id = {r.get("request_id"): r for r in requests if r.get("request_id")}
    times = {id(row): float(row["state_change_t"]) for row in rows if row.get("state_change_t") not in (None, "")}
    running = {key: in_flight(requests, t) for key, t in times.items()}
    seen = Counter(label for found in running.values() for label in {_label(r) for r in found})
    out = []
    for row in rows:
        likely = ""
        if row.get("request_id") and row["request_id"] in by_id:  # the app tags its SQL: the exact request
            likely = _label(by_id[row["request_id"]])
        elif row.get("scenario"):
            likely = f"{row['scenario']} {row.get('route', '')}".strip()
        elif running.get(id(row)):
            latest = {_label(r): r["start"] for r in sorted(running[id(row)], key=lambda r: r["start"])}
            likely = max(latest, key=lambda label: (seen[label], label.split(" ", 1)[0] != "steady", latest[label]))
        out.append({**row, "statement": normalise(str(row.get("query", ""))), "likely": likely})
    return out


def with_checkouts(
    rows: Sequence[dict[str, Any]], view: Mapping[str, Any] | None, requests: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Each row with where its connection was checked out (``taken_at``, the innermost application
    frame; ``taken_stack``; ``taken_ago_s``), when the app's pool view records it; an ``unsure``
    row the app's pool counts checked out is ``held``. When the view
    also knows the request that took it (``drainwatch.instrument.RequestContext``), that request is
    exact: ``request_id``, ``scenario`` and ``route`` are filled where SQL tags left them empty, and
    ``likely`` becomes that request."""
    taken = {c.get("pid"): c for c in (view or {}).get("checkouts") or [] if isinstance(c, Mapping)}
    by_id = {r.get("request_id"): r for r in requests if r.get("request_id")}
    out = []
    for row in rows:
        found = taken.get(row.get("pid"))
        if found and row.get("kind") == UNSURE:
            row = {**row, "kind": HELD}  # the app's own pool counts it lent out: no guess left to make
        if found and found.get("stack"):
            stack = [str(frame) for frame in found["stack"]]
            row = {
                **row,
                "taken_at": stack[0],
                "taken_stack": " <- ".join(stack),
                "taken_ago_s": round(time.time() - float(found.get("taken_t") or time.time()), 1),
            }
        if found and isinstance(found.get("request"), Mapping):
            row = _with_request(row, found["request"], by_id)
        out.append(row)
    return out


def _with_request(
    row: dict[str, Any], request: Mapping[str, Any], by_id: Mapping[Any, Mapping[str, Any]]
) -> dict[str, Any]:
    rid, scenario = str(request.get("id") or ""), str(request.get("scenario") or "")
    route = f"{request.get('method', '')} {request.get('path', '')}".strip()
    likely = _label(by_id[rid]) if rid in by_id else f"{scenario} {route}".strip()
    return {
        **row,
        "request_id": row.get("request_id") or rid,
        "scenario": row.get("scenario") or scenario,
        "route": row.get("route") or route,
        "likely": likely or row.get("likely", ""),
    }


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Leaked rows grouped by statement, by the request most likely to have left them, and by
    where they were taken (when the pool view records it)."""
    statements = Counter(str(r.get("statement") or normalise(str(r.get("query", "")))) for r in rows)
    likely = Counter(str(r["likely"]) for r in rows if r.get("likely"))
    sites = Counter(str(r["taken_at"]) for r in rows if r.get("taken_at"))
    return {
        "statements": dict(statements.most_common(10)),
        "sites": dict(sites.most_common(10)),
        "likely": dict(likely.most_common(10)),
        "attributed": sum(likely.values()),
        "of": len(rows),
    }
