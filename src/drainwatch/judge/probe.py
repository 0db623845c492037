"""The probe: after settle, does the service still serve? Each request has its own timeout.

A hung or failing request on a live service means its pool is exhausted; a refused
connection means the service is down. Only the latter is an ERROR.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from drainwatch.traffic import Request


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


async def probe(
    url: str, request: Request, *, count: int, timeout: float, out: Path, append: bool = False
) -> ProbeResult:
    """Send ``request`` up to ``count`` times, each with its own ``timeout``; stop at a hang or a refusal."""
    result = ProbeResult()
    with open(out, "a" if append else "w", newline="") as handle:
        rows = csv.writer(handle)
        if not append:
            rows.writerow(["t", "status", "ok", "elapsed_ms", "error"])
        headers = {"X-Drainwatch-Scenario": "probe", **request.headers}
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            for _ in range(count):
                started = time.monotonic()
                status, error = "", ""
                try:
                    resp = await client.request(request.method, url.rstrip("/") + request.path, json=request.json)
                    status = str(resp.status_code)
                    ok = resp.status_code < 400
                    if not ok:
                        error = answer(resp.status_code, resp.text)
                except httpx.TimeoutException:
                    ok, error = False, f"no answer within {timeout:g}s"
                except httpx.ConnectError as exc:
                    ok, error = False, f"connection refused ({exc})"
                    result.target_alive = False
                except httpx.HTTPError as exc:
                    ok, error = False, f"{type(exc).__name__}: {exc}"
                elapsed = (time.monotonic() - started) * 1000
                rows.writerow([f"{time.time():.3f}", status, int(ok), f"{elapsed:.1f}", error])
                result.attempts += 1
                result.ok += int(ok)
                if error and not result.detail:
                    result.detail = error
                if not ok and (error.startswith("no answer") or not result.target_alive):
                    break  # a hung pool or a dead target: more attempts only add waiting
    if result.ok == result.attempts:
        result.target_alive = True
    return result
