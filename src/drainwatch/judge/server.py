"""The server's own limit: a leak can fill PostgreSQL itself, not just one pool.

``max_connections`` minus the slots reserved for superusers (and, from PostgreSQL 16,
``reserved_connections``) is what ordinary clients share. When the peak reaches it, or the
server refused connections (``sorry, too many clients already``), the server ran out first,
and that is a finding, never an error of drainwatch's.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) (UTC|GMT)")


def log_time(line: str) -> float | None:
    """The unix time a PostgreSQL log line starts with (``2026-12-01 12:40:20.250 UTC``), or None."""
    stamp = _STAMP.match(line)
    if stamp is None:
        return None
    whole, _, fraction = stamp.group(1).partition(".")
    seconds = datetime.strptime(whole + "+0000", "%Y-%m-%d %H:%M:%S%z").timestamp()
    return seconds + (float(f"0.{fraction}") if fraction else 0.0)


def server_check_numbers(
    max_connections: int, reserved: int, peak: dict[str, Any], refused: dict[str, Any]
) -> dict[str, Any]:
    usable = max(0, max_connections - reserved)
    full = bool(usable) and peak["peak"] >= usable
    return {
        "max_connections": max_connections,
        "reserved": reserved,
        "usable": usable,
        "peak": peak["peak"],
        "peak_at": peak["at"],
        "refusals": refused["count"],
        "first_refusal": refused["first"],
        "full": full or bool(refused["count"]),
    }
