"""The probe: after settle, does the service still serve? Each request has its own timeout.

A hung or failing request on a live service means its pool is exhausted; a refused
connection means the service is down. Only the latter is an ERROR (``judge.verdict`` weighs it).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import httpx

from drainwatch.judge.probe import ProbeResult, answer
from drainwatch.traffic import Request


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
