"""The warnings a leaking service prints and nobody reads, read while it runs.

drainwatch captures the output of a service it starts (the demo, ``--serve``) in
``logs/target.log``. ``watch_log`` tails that file while the run goes on and writes every
line of a known kind to ``service-warnings.csv`` with the time it was seen (within
``POLL_S``), so the timeline and the verdict can say when the service complained.
"""

from __future__ import annotations

import asyncio
import csv
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

POLL_S = 0.5
MAX_LINE = 300  # a warning line kept in the CSV is cut here; the log has it whole
COLUMNS = ["t", "kind", "line"]
_WARNING_PREFIX = re.compile(r"^.*?:\d+: \w*Warning: ")  # how the warnings module prints one

# kind → (the line's pattern, what it says in a sentence)
KINDS: dict[str, tuple[re.Pattern[str], str]] = {
    "gc_cleanup": (
        re.compile(r"garbage collector is trying to clean up non-checked-in connection", re.I),
        "SQLAlchemy's garbage collector cleaned up connections nobody checked in",
    ),
    "pool_exhausted": (
        re.compile(
            r"QueuePool limit of size \d+ overflow \d+ reached|PoolTimeout|couldn't get a connection after"
            r"|TooManyConnectionsError|PoolError: connection pool exhausted",
            re.I,
        ),
        "the service's pool ran out (QueuePool limit / PoolTimeout)",
    ),
    "server_full": (
        re.compile(r"too many clients already|remaining connection slots are reserved", re.I),
        "PostgreSQL refused the service a connection (too many clients)",
    ),
    # a database connection the garbage collector closed: psycopg's and asyncpg's ResourceWarning
    "connection_dropped": (
        re.compile(r"connection .*was deleted while still open|unclosed connection", re.I),
        "database connections dropped unclosed, closed later by the garbage collector",
    ),
    "unclosed": (
        re.compile(r"ResourceWarning: unclosed|unclosed (transport|<)", re.I),
        "connections or resources dropped without being closed",
    ),
    "task_destroyed": (
        re.compile(r"Task was destroyed but it is pending", re.I),
        "asyncio tasks destroyed while still pending",
    ),
    "never_awaited": (re.compile(r"coroutine .* was never awaited", re.I), "coroutines never awaited"),
    "pool_warning": (
        re.compile(r"(asyncpg|psycopg\.pool|psycopg_pool).*(warn|discard|terminat|broken|lost)", re.I),
        "the driver's pool warned",
    ),
}


def kind_of(line: str) -> str | None:
    """The kind of warning ``line`` is, or None."""
    for kind, (pattern, _) in KINDS.items():
        if pattern.search(line):
            return kind
    return None


def describe(kind: str) -> str:
    return KINDS[kind][1] if kind in KINDS else kind


@asynccontextmanager
async def watch_log(log_path: Path, out: Path) -> AsyncIterator[None]:
    """Tail ``log_path`` into ``out`` until the block ends, then read what is left once more."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(COLUMNS)
        reader = _Tail(log_path, writer, sink)
        task = asyncio.create_task(reader.follow())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.wait([task])  # reaps it without swallowing our own cancellation
            reader.read_new()


class _Tail:
    """What was added to a file since the last read, a whole line at a time."""

    def __init__(self, path: Path, writer: Any, sink: IO[str]) -> None:
        self.path, self.writer, self.sink = path, writer, sink
        self.offset = 0
        self.partial = b""

    async def follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            self.read_new()

    def read_new(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                if handle.seek(0, 2) < self.offset:  # started again (--isolate): a new file
                    self.offset, self.partial = 0, b""
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # not written yet, or the service is being restarted
            return
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        now = round(time.time(), 3)
        said: set[str] = set()
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            kind = kind_of(line)
            message = _WARNING_PREFIX.sub("", line)
            if kind and message not in said:  # SQLAlchemy logs each one and warns it too: one line
                said.add(message)
                self.writer.writerow([now, kind, line[:MAX_LINE]])
        self.sink.flush()


def read_warnings(path: Path) -> list[dict[str, str]]:
    """The rows of ``service-warnings.csv`` (none when it is missing or unreadable)."""
    try:
        with open(path, newline="") as handle:
            return [row for row in csv.DictReader(handle) if row.get("kind")]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def warning_counts(path: Path, start: float = 0.0, end: float = float("inf")) -> dict[str, int]:
    """Warnings per kind seen between ``start`` and ``end`` (unix times), most frequent first."""
    counts: Counter[str] = Counter()
    for row in read_warnings(path):
        try:
            seen = float(row["t"])
        except (TypeError, ValueError):
            continue
        if start <= seen <= end:
            counts[row["kind"]] += 1
    return dict(counts.most_common())
