"""Which client backends are the target's: the SQL that selects them, never drainwatch's own."""

from __future__ import annotations

from typing import Any

from drainwatch.plan import Match
from drainwatch.provision.postgres import HARNESS_APP_NAME

COLLECTOR_APP_NAME = "drainwatch-collector"
OWN_APP_NAMES = (COLLECTOR_APP_NAME, HARNESS_APP_NAME)


def match_clause(match: Match) -> tuple[str, dict[str, Any]]:
    """SQL that is true for the target's backends, with its parameters."""
    parts = ["coalesce(application_name, '') <> ALL(%(own)s)"]
    params: dict[str, Any] = {"own": list(OWN_APP_NAMES)}
    if match.application_name:
        parts.append("application_name LIKE %(app)s")
        params["app"] = match.application_name
    if match.usename:
        parts.append("usename = %(usename)s")
        params["usename"] = match.usename
    if match.datname:
        parts.append("datname = %(datname)s")
        params["datname"] = match.datname
    if match.client_addr:
        parts.append("host(client_addr) = %(client_addr)s")
        params["client_addr"] = match.client_addr
    return " AND ".join(parts), params
