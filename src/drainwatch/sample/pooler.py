"""PgBouncer's own counts beside PostgreSQL's: ``SHOW POOLS`` sampled into ``pgbouncer.csv``.

Behind a pooler, ``pg_stat_activity`` sees the pooler's server connections; whether the
service's clients are waiting for one, or still hold one, only the pooler can say.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from drainwatch.provision.pgbouncer import POOL_COLUMNS, show_pools

COLUMNS = ["t", *POOL_COLUMNS, "gap"]


@asynccontextmanager
async def sample_pools(admin_dsn: str, path: Path, interval: float) -> AsyncIterator[None]:
    """Write one row of ``SHOW POOLS`` every ``interval`` seconds (a gap row when it cannot be read)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()

        async def follow() -> None:
            while True:
                try:
                    row: dict[str, object] = {**await show_pools(admin_dsn), "gap": 0}
                except OSError:
                    row = {"gap": 1}
                writer.writerow({"t": round(time.time(), 3), **row})
                handle.flush()
                await asyncio.sleep(interval)

        task = asyncio.create_task(follow())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.wait([task])  # reaps it without swallowing our own cancellation


def last_pools(path: Path, before: float | None = None) -> dict[str, int] | None:
    """The last readable row (before unix time ``before``, when given), or None."""
    found = None
    try:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    if row.get("gap") == "1" or (before is not None and float(row["t"]) > before):
                        continue
                    found = {key: int(float(row[key])) for key in POOL_COLUMNS}
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        return None
    return found
