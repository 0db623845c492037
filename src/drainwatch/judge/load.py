"""Did the load test what it says? Per chaos kind, from Locust's own CSVs.

A kind whose requests were mostly refused as not served (404, 405, 401…), or whose chaos
never happened (an error request that answered 200, a hang-up that came after the
response), tested nothing: the verdict is ERROR, naming the kind and its top error. 5xx
answers are not counted against the load: an exhausted pool answers them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

KINDS = ("steady", "disconnect", "timeout", "error")
OTHER = "other"  # requests a locustfile of the user's sends under names of its own: meant to be served
_STATUS = re.compile(r"HTTP (\d{3})")
BROKEN_SHARE = 0.5  # a kind is broken when at least this share of its requests tested nothing


def kind_counts(stats: Iterable[Mapping[str, str]], failures: Iterable[Mapping[str, str]]) -> dict[str, dict[str, Any]]:
    """Per kind: requests, failures, and those that tested nothing (``not_served``, ``no_chaos``) with the
    top error."""
    out: dict[str, dict[str, Any]] = {}
    for row in stats:
        kind = _kind_of(row.get("Name", ""))
        if kind:
            entry = out.setdefault(
                kind, {"requests": 0, "failed": 0, "not_served": 0, "no_chaos": 0, "errors": Counter()}
            )
            entry["requests"] += int(float(row.get("Request Count") or 0))
    for row in failures:
        kind = _kind_of(row.get("Name", ""))
        if kind not in out:
            continue
        count = int(float(row.get("Occurrences") or 0))
        out[kind]["failed"] += count
        error = _clean(row.get("Error", ""))
        status = _STATUS.search(error)
        if "no chaos" in error.lower() or (status and kind in ("error", "timeout") and status.group(1).startswith("2")):
            out[kind]["no_chaos"] += count
        elif status and status.group(1).startswith("4") and status.group(1) not in ("408", "429"):
            out[kind]["not_served"] += count
        out[kind]["errors"][f"{row.get('Name', '').split(' ', 1)[-1]}: {error}"[:200]] += count
    return {
        kind: {
            **entry,
            "top_error": entry["errors"].most_common(1)[0][0] if entry["errors"] else "",
            "errors": dict(entry["errors"].most_common(5)),
        }
        for kind, entry in out.items()
    }


def _kind_of(name: str) -> str:
    """The chaos kind a Locust request name starts with; ``other`` for a locustfile's own requests
    (``GET /items``), "" for Locust's total row."""
    if name == "Aggregated" or not name:
        return ""
    first = name.split(" ", 1)[0]
    return first if first in KINDS else OTHER


def broken_kinds(counts: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per chaos kind that tested nothing (a locustfile's own requests are not judged so)."""
    out = []
    for kind, entry in counts.items():
        requests = entry["requests"]
        if not requests or kind == OTHER:
            continue
        for key, what in (("not_served", "were answered as not served"), ("no_chaos", "never delivered the chaos")):
            if key == "no_chaos" and entry.get("sweep"):
                continue  # a sweep's delay past the response's end is a data point: no hang-up, no leak
            if entry[key] / requests >= BROKEN_SHARE:
                out.append(
                    f"the {kind} kind tested nothing: {entry[key]} of {requests} requests {what} "
                    f"(top error: {entry['top_error']})"
                )
                break
    return out


def _clean(error: str) -> str:
    """Locust wraps messages as ``CatchResponseError('…')``: keep the message."""
    found = re.match(r"^\w+\((['\"])(.*)\1\)$", error.strip(), re.S)
    return (found.group(2) if found else error).strip()
