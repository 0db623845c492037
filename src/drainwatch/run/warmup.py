"""Warm-up: steady traffic until the target's pools stop growing, ``--warmup`` at most.

A pool fills within a second or two of steady traffic; waiting out the whole ``--warmup``
after that only makes the run longer. The warm-up ends once it has run ``WARMUP_MIN`` and
the target's connection count has set no new high for ``WARMUP_STEADY``. A count that keeps
growing (a connection per request) or never rises above zero runs the whole warm-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from drainwatch.sample.collector import read_last_sample

WARMUP_MIN = 2.0  # seconds of warm-up before it may end early
WARMUP_STEADY = 1.5  # ...with no new high of the target's count for this long
POLL = 0.25


def stopped_growing(readings: Sequence[tuple[float, int]], now: float, started: float) -> bool:
    """True once the warm-up has run ``WARMUP_MIN`` and the count (``(t, total)`` readings)
    has reached a high above zero at least ``WARMUP_STEADY`` ago and not passed it since."""
    if now - started < WARMUP_MIN or not readings:
        return False
    high = max(total for _, total in readings)
    if high <= 0:
        return False
    reached = min(t for t, total in readings if total == high)
    return now - reached >= WARMUP_STEADY


async def warm_up(load: Coroutine[Any, Any, int], samples: Path, longest: float) -> float | None:
    """Run the warm-up ``load`` (Locust for ``longest`` seconds) and stop it once the pools stop
    growing, as the collector's ``samples`` show. Returns the seconds it took when it ended
    early, None when it ran its course."""
    task = asyncio.create_task(load)
    started, readings = time.time(), []
    try:
        while not task.done():
            await asyncio.wait([task], timeout=POLL)
            row = read_last_sample(samples)
            if row is not None and row["gap"] != "1" and float(row["t"]) >= started:
                readings.append((float(row["t"]), int(row["total"])))
            if not task.done() and stopped_growing(readings, time.time(), started):
                task.cancel()  # Locust gets SIGTERM: it stops its users and writes its CSVs
                break
    finally:
        task.cancel()
        await _reap(task)
    if task.cancelled():
        return round(time.time() - started, 2)
    task.result()  # Locust's own failure (a locustfile it refused) is the caller's
    return None


async def _reap(task: asyncio.Task[Any]) -> None:
    """Wait until ``task`` has finished its cleanup (its Locust process stopped), even when we
    are cancelled meanwhile; then re-raise that cancellation: no child outlives the phase."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
