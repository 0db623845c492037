"""Durations: read from what people type, written the way people read them."""

from __future__ import annotations

import math
import re

from drainwatch.errors import UsageError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, name: str = "duration") -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``1m30s``, ``500ms``, ``2h``.

    Raises UsageError when the text is not a positive, finite duration.
    """
    raw = str(text).strip().lower()
    sign = -1.0 if raw.startswith("-") else 1.0
    raw = raw.lstrip("+-")
    seconds: float | None = None
    try:
        seconds = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for match in _DURATION.finditer(raw):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos == len(raw) and raw:
            seconds = total
    if seconds is None:
        raise UsageError(
            f"{name} {text!r} is not a duration",
            hint="write it like 30s, 2m, 1m30s or 500ms",
        )
    seconds *= sign
    if not math.isfinite(seconds):  # nan, inf, 1e309: float() reads them, no clock does
        raise UsageError(f"{name} {text!r} is not a duration", hint="write it like 30s, 2m, 1m30s or 500ms")
    if seconds <= 0:
        raise UsageError(f"{name} must be positive, got {text!r}", hint="give it a value above zero")
    return seconds


def human_seconds(seconds: float) -> str:
    """``42.0s``, ``3m 05s``, ``9h 35m``: ages a person reads at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def human_hold(seconds: float) -> str:
    """A connection's hold: ``8 ms`` under a second (most are), else as ``human_seconds``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else human_seconds(seconds)
