"""Who left each connection open, when the application does not tag its SQL.

Two clues, both from what drainwatch recorded itself:

- the connection's last statement, normalised (literals out, whitespace folded), so nine
  connections left by one code path group as ``9 × SELECT count(*) … FROM items``;
- the requests in flight when its state last changed (``requests-*.csv``, written by the
  scenarios): the request that ran the last statement on a connection was running then. A
  connection that served one request and no more was opened by a request running from before
  its opening to its last change: usually one, named exactly.

SQL tags (``/* drainwatch route=… */``) stay the exact path when an app has them.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from drainwatch.judge.forensics import HELD, UNSURE

_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w$])-?\d+(?:\.\d+)?\b")
_PARAM = re.compile(r"\$\d+|%\(\w+\)s|%s|:\w+\b")
_SPACE = re.compile(r"\s+")
ONE_REQUEST = 1.0  # a connection that went quiet this soon after it opened served one request
SLACK = 0.003  # seconds of slack between Locust's clock and PostgreSQL's (one machine: the same clock)


def normalise(query: str, width: int = 90) -> str:
    """``SELECT * FROM t WHERE id = 42`` → ``SELECT * FROM t WHERE id = ?``, on one line, shortened."""
    text = _COMMENT.sub(" ", query)
    text = _STRING.sub("?", text)
    text = _PARAM.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _label(request: Mapping[str, Any]) -> str:
    return f"{request.get('scenario', '')} {request.get('method', '')} {request.get('name', '')}".strip()


def in_flight(requests: Sequence[Mapping[str, Any]], t: float) -> list[Mapping[str, Any]]:
    """The requests running at unix time ``t``."""
    return [r for r in requests if r["start"] - SLACK <= t <= r["end"] + SLACK]


def attribute(rows: Sequence[dict[str, Any]], requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``statement`` (normalised) and ``likely``: the tagged request when the app tags
    its SQL, else, among the requests that could have left it (those spanning its one request's
    life, or those in flight at its last change), the kind found at the most of the connections left
    with the same statement (the kind that runs a statement is there at every one of its leaks, the
    others only by chance), ties going to chaos over steady, then to the latest started."""
    by_id = {r.get("request_id"): r for r in requests if r.get("request_id")}
    candidates = {id(row): _candidates(row, requests) for row in rows}
    votes: dict[str, Counter[str]] = {}
    for row in rows:
        statement = normalise(str(row.get("query", "")))
        votes.setdefault(statement, Counter()).update(set(candidates[id(row)]))
    out = []
    for row in rows:
        statement, likely = normalise(str(row.get("query", ""))), ""
        if row.get("request_id") and row["request_id"] in by_id:  # the app tags its SQL: the exact request
            likely = _label(by_id[row["request_id"]])
        elif row.get("scenario"):
            likely = f"{row['scenario']} {row.get('route', '')}".strip()
        elif found := candidates[id(row)]:
            seen = votes[statement]
            likely = max(found, key=lambda label: (seen[label], label.split(" ", 1)[0] != "steady", found[label]))
        out.append({**row, "statement": statement, "likely": likely})
    return out


def _candidates(row: Mapping[str, Any], requests: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The kinds of request that could have left ``row`` (label → the latest start among them): for
    a connection that lived one request's length, those running from before it opened to its last
    change of state (one of them opened it); for others, those in flight at its last change."""
    try:
        changed = float(row["state_change_t"])
    except (KeyError, TypeError, ValueError):
        return {}
    life = float(row.get("backend_age_s") or 0) - float(row.get("state_age_s") or 0)
    if life <= ONE_REQUEST:
        found = [r for r in requests if r["start"] - SLACK <= changed - life and changed <= r["end"] + SLACK]
    else:
        found = in_flight(requests, changed)
    return {_label(r): r["start"] for r in sorted(found, key=lambda r: r["start"])}


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


SPREAD_SHARE = 0.1  # a kind of request that left this share of the connections is one of their causes


def likely_sentence(found: Mapping[str, Any], code: str = "`") -> str:
    """The requests most likely to have left the connections, said once for every renderer: one kind,
    or each of several when the leak is on every path (a connection per request leaks on all)."""
    likely, total = dict(found.get("likely") or {}), int(found.get("of") or 0)
    close = code.replace("<", "</")
    causes = {label: n for label, n in likely.items() if n >= SPREAD_SHARE * total}
    routes = {label.split(" ", 1)[-1] for label in causes}
    if len(causes) > 1 and len(routes) == 1:  # one route, reached by several scenarios (preflight's too)
        each = ", ".join(f"{label.split(' ', 1)[0]} {n}" for label, n in causes.items())
        return f"left by {code}{routes.pop()}{close} ({sum(causes.values())} of {total}: {each})"
    if len(causes) > 1:
        each = ", ".join(f"{code}{label}{close} ({n})" for label, n in causes.items())
        return f"left by several kinds of request, on a path they share: {each} of {total}"
    label, count = next(iter(likely.items()))
    return f"left by {code}{label}{close} ({count} of {total})"
