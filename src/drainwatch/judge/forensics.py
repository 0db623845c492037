"""Forensics on the target's connections still open after settle.

A connection given back to its pool carries the driver's reset statement as its last
query (asyncpg's reset script, SQLAlchemy's ``ROLLBACK``); one the application still
holds carries the application's own SQL. Apps that tag their SQL with a comment like
``/* drainwatch route=chat scenario=disconnect rid=ab12 */`` get each leak attributed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drainwatch.plan import Match
from drainwatch.sample.selector import resolve

POOLED, HELD, UNSURE, IN_TRANSACTION, ACTIVE, OTHER = "pooled", "held", "unsure", "in_transaction", "active", "other"

_RESET = re.compile(
    r"^\s*(rollback|commit|discard all|reset all|select pg_advisory_unlock_all\(\)|"
    r"set session characteristics|deallocate all|close all|unlisten \*|end)(?![a-z0-9_])",
    re.I,
)
_TAG = re.compile(r"/\*\s*drainwatch\s+(?P<body>[^*]*)\*/")


def snapshot_sql(match: Match, dsn: str = "") -> tuple[str, dict[str, Any]]:
    where, params = resolve(match, dsn)
    sql = f"""
        SELECT pid, coalesce(application_name, '') AS application_name, coalesce(state, '') AS state,
               extract(epoch FROM now() - backend_start)::float8 AS backend_age_s,
               extract(epoch FROM now() - xact_start)::float8 AS xact_age_s,
               extract(epoch FROM now() - state_change)::float8 AS state_age_s,
               extract(epoch FROM state_change)::float8 AS state_change_t,
               coalesce(wait_event_type, '') AS wait_event_type,
               coalesce(host(client_addr), 'local') AS client_addr,
               coalesce(query, '') AS query
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND {where}
        ORDER BY application_name, state, state_change
    """
    return sql, params


def is_reset_statement(query: str) -> bool:
    return query.strip() == "" or bool(_RESET.match(query))


def parse_tag(query: str) -> dict[str, str]:
    """``route``, ``scenario`` and ``rid`` from a drainwatch SQL comment, when present."""
    found = _TAG.search(query)
    if not found:
        return {}
    pairs = (item.partition("=") for item in found.group("body").split())
    return {key: value for key, _, value in pairs if value and value != "-"}


def resetting_apps(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Application names whose pool is seen resetting the connections it gets back."""
    return {
        row["application_name"]
        for row in rows
        if row["state"] == "idle" and row["query"].strip() and is_reset_statement(row["query"])
    }


@dataclass(frozen=True)
class Resets:
    """What baseline taught about the pools: which backends were seen reset, and which
    application names also hold idle connections that were not (two pools, one name)."""

    apps: frozenset[str] = frozenset()
    pids: frozenset[int] = frozenset()
    mixed: frozenset[str] = frozenset()


def learn(baseline: Iterable[Mapping[str, Any]]) -> Resets:
    """Resets as the baseline snapshot shows them (every connection back in its pool)."""
    rows = [row for row in baseline if row["state"] == "idle"]
    reset = [row for row in rows if row["query"].strip() and is_reset_statement(row["query"])]
    apps = {row["application_name"] for row in reset}
    unreset = {row["application_name"] for row in rows if not is_reset_statement(row["query"])}
    return Resets(
        frozenset(apps), frozenset(int(row["pid"]) for row in reset if "pid" in row), frozenset(apps & unreset)
    )


def classify(
    rows: Iterable[Mapping[str, Any]],
    resetting: set[str] | None = None,
    *,
    recent: float = 0.0,
    resets: Resets | None = None,
) -> list[dict[str, Any]]:
    """Each connection with its ``kind``: pooled, held, unsure, in_transaction, active or other.

    An idle connection with application SQL last is ``held`` where its application's pool
    is known to reset connections it gets back (``resetting``, learnt at baseline when
    every connection was in its pool, plus what these rows show). Elsewhere it is
    ``unsure``: in a pool that does not reset, a pooled and a leaked connection look the
    same, and only the pool's own view, the counts and the probe can tell.

    Held means frozen: an idle connection whose state changed less than ``recent`` seconds
    ago belongs to a request still running (between two queries of it) and counts as active.
    A health check's ``SELECT 1`` is the application's SQL, not a pool's reset.

    With ``resets`` (learnt at baseline), a backend seen reset is held when it shows
    application SQL; in an application name that baseline showed with both resetting and
    non-resetting pools, any other backend is only ``unsure``.
    """
    rows = [dict(row) for row in rows]
    resets = resets or Resets()
    resetting = resetting_apps(rows) | (resetting or set()) | set(resets.apps)
    out = []
    for row in rows:
        state = row["state"]
        if state.startswith("idle in transaction"):
            kind = IN_TRANSACTION
        elif state == "active":
            kind = ACTIVE
        elif state == "idle":
            app_sql = not is_reset_statement(row["query"])
            if app_sql and float(row.get("state_age_s") or 0) < recent:
                kind = ACTIVE
            else:
                kind = POOLED if not app_sql else HELD if _resets(row, resetting, resets) else UNSURE
        else:
            kind = OTHER
        tag = parse_tag(row["query"])
        out.append(
            {
                **row,
                "kind": kind,
                "route": tag.get("route", ""),
                "scenario": tag.get("scenario", ""),
                "request_id": tag.get("rid", ""),
            }
        )
    return out


def _resets(row: Mapping[str, Any], resetting: set[str], resets: Resets) -> bool:
    """True when this backend's pool is known to reset what it gets back."""
    if row.get("pid") in resets.pids:
        return True
    return row["application_name"] in resetting and row["application_name"] not in resets.mixed
