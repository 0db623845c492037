"""Report checkpoints: ``report.html`` rendered now and then during a long load, so an aborted soak still has one."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


async def checkpoint_reports(run_dir: Path, duration: float, every: float) -> None:
    """Render the report at each multiple of ``every`` seconds within ``duration`` (a monotonic
    schedule: rendering time does not push the next checkpoint back)."""
    from drainwatch.report import render_report

    start = time.monotonic()
    for n in range(1, int(duration // every) + 1):
        await asyncio.sleep(max(0.0, start + n * every - time.monotonic()))
        try:
            await asyncio.to_thread(render_report, run_dir)
        except Exception:  # a checkpoint is a convenience; the final report is what counts
            log.warning("report checkpoint failed", exc_info=True)
