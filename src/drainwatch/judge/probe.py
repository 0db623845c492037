"""What the probe found (``run.probe`` sends it), and a failed answer in one line.

A hung or failing request on a live service means its pool is exhausted; a refused
connection means the service is down. Only the latter is an ERROR.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass
class ProbeResult:
    attempts: int = 0
    ok: int = 0
    target_alive: bool = True  # False: connection refused or the process is gone
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.attempts > 0 and self.ok == self.attempts


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>|<h1[^>]*>(.*?)</h1>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def answer(status: int, body: str, width: int = 120) -> str:
    """A failed answer as one line a reader takes for the service's: its status and the page's title
    or first heading, the JSON's ``detail``/``error``/``message``, or the first line of text."""
    line = ""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            line = str(next((data[k] for k in ("detail", "error", "message") if data.get(k)), ""))
    except ValueError:
        if found := _TITLE.search(body):
            line = _TAGS.sub("", found.group(1) or found.group(2) or "")
        else:
            line = next((text for text in _TAGS.sub(" ", body).splitlines() if text.strip()), "")
    line = " ".join(line.split())
    line = line if len(line) <= width else line[: width - 1] + "…"
    return f"the service answered HTTP {status}" + (f': "{line}"' if line else " with an empty body")
