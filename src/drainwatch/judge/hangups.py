"""Did the client's hang-up reach the server's work? For each disconnect request of the load:

- ``cancelled``: PostgreSQL cancelled a statement just after it (``canceling statement due
  to user request`` in the embedded server's log): the handler was cancelled, and its
  driver told the server;
- ``kept_working``: a backend of the target stayed active with no request in flight just
  after it: the handler ran on for a client that had gone (zombie work);
- ``unseen``: neither could be seen (the handler had no statement running, or no server
  log could be read).

Counts of backends cannot say which backend served which request, so ``kept_working`` is a
floor, and a guess at which: each backend seen starting to work for nobody is given to one
hang-up before it, and a backend is only seen so when no other request in flight explains it
(clients queueing for the pool hide zombies until the load stops).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

CANCEL_WINDOW = 2.0  # a statement cancelled this soon after a hang-up was that hang-up's


def hangups(
    requests: Sequence[Mapping[str, Any]],
    active: Sequence[tuple[float, int]],
    cancels: Sequence[float] | None,
) -> dict[str, dict[str, Any]]:
    """Per disconnect request ("disconnect POST /chat"): hang-ups, and how many were seen reaching the server."""
    # only those that hung up as planned: a 404 or a refused connection reached no work to begin with
    gone = sorted(
        (r for r in requests if r.get("scenario") == "disconnect" and r.get("outcome", "chaos") == "chaos"),
        key=lambda r: r["end"],
    )
    if not gone:
        return {}
    cancelled = _match_cancels([r["end"] for r in gone], cancels or [])
    kept = _match_kept([r["end"] for r in gone], cancelled, requests, active)
    out: dict[str, dict[str, Any]] = {}
    for i, request in enumerate(gone):
        label = f"disconnect {request.get('method', '')} {request.get('name', '')}".replace("  ", " ").strip()
        row = out.setdefault(
            label, {"hangups": 0, "cancelled": 0, "kept_working": 0, "unseen": 0, "server_log": cancels is not None}
        )
        row["hangups"] += 1
        row["cancelled" if i in cancelled else "kept_working" if i in kept else "unseen"] += 1
    return out


def _match_cancels(ends: Sequence[float], cancels: Sequence[float]) -> set[int]:
    """Hang-ups (by index) followed within CANCEL_WINDOW by a cancel no earlier hang-up took."""
    taken: set[int] = set()
    for cancel in cancels:
        first = bisect.bisect_left(ends, cancel - CANCEL_WINDOW)
        for i in range(first, bisect.bisect_right(ends, cancel)):
            if i not in taken:
                taken.add(i)
                break
    return taken


def _match_kept(
    ends: Sequence[float],
    cancelled: set[int],
    requests: Sequence[Mapping[str, Any]],
    active: Sequence[tuple[float, int]],
) -> set[int]:
    """Hang-ups that left a backend working with no request in flight: each such backend, when it
    appears, is given to the latest hang-up before it that has none yet. Abandoned work may start
    long after its hang-up (it queued for the pool), so there is no window."""
    starts = sorted(r["start"] for r in requests)
    finished = sorted(r["end"] for r in requests)
    waiting: list[int] = []  # hang-ups so far with no backend given to them, latest last
    kept: set[int] = set()
    following, before = 0, 0
    for t, n in active:
        while following < len(ends) and ends[following] <= t:
            if following not in cancelled:
                waiting.append(following)
            following += 1
        running = bisect.bisect_right(starts, t) - bisect.bisect_left(finished, t)
        spare = max(0, n - running)  # active backends no request still running explains
        for _ in range(min(spare - before, len(waiting))):
            kept.add(waiting.pop())
        before = spare
    return kept


def sentence(label: str, row: Mapping[str, Any]) -> str:
    """What the client's hang-ups did to the server's work, in a user's words:
    ``disconnect POST /chat: 30 clients hung up; the server stopped the query of 12; 6 queries ran on for nobody;
    12 ended before the server noticed``."""
    hangups, cancelled = int(row.get("hangups", 0)), int(row.get("cancelled", 0))
    kept, unseen = int(row.get("kept_working", 0)), int(row.get("unseen", 0))
    said = [f"{hangups} client(s) hung up"]
    if not row.get("server_log"):
        said.append("whether the server stopped their queries is unknown (no server log)")
    elif cancelled:
        said.append(f"the server stopped the query of {cancelled}")
    else:
        said.append("the server stopped none of their queries")
    if kept:
        said.append(f"at least {kept} left a query running for nobody")
    if unseen:
        said.append(f"{unseen} left no trace on the server (no query of theirs was running when they hung up)")
    return f"{label}: " + "; ".join(said)
