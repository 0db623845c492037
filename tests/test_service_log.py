"""Reading the service's log while it runs: a real file, written as a service writes it, tailed for real."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drainwatch.sample.service_log import POLL_S, kind_of, read_warnings, warning_counts, watch_log

SA_LOGGED = (
    "The garbage collector is trying to clean up non-checked-in connection <AdaptedConnection "
    "<asyncpg.connection.Connection object at 0x7f0b0c18b350>>, which will be terminated.  Please ensure that "
    "SQLAlchemy pooled connections are returned to the pool explicitly"
)
SA_WARNED = f"/usr/lib/python3.11/weakref.py:590: SAWarning: {SA_LOGGED}"


def test_lines_are_sorted_by_what_they_say() -> None:
    assert kind_of(SA_LOGGED) == "gc_cleanup"
    assert kind_of("sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 10 reached, connection timed out")
    assert kind_of("psycopg_pool.PoolTimeout: couldn't get a connection after 3.00 sec") == "pool_exhausted"
    assert kind_of("FATAL:  sorry, too many clients already") == "server_full"
    assert kind_of("ResourceWarning: unclosed <socket.socket fd=9>") == "unclosed"
    assert kind_of("Task was destroyed but it is pending!") == "task_destroyed"
    assert kind_of("RuntimeWarning: coroutine 'Connection.close' was never awaited") == "never_awaited"
    assert kind_of('INFO:     127.0.0.1:50412 - "GET /items HTTP/1.1" 200 OK') is None


def test_the_log_is_read_while_it_grows_and_once_more_at_the_end(tmp_path: Path) -> None:
    log, out = tmp_path / "target.log", tmp_path / "service-warnings.csv"

    async def service_writing() -> list[dict[str, str]]:
        async with watch_log(log, out):
            await asyncio.sleep(POLL_S / 2)  # the service has not written its log yet
            with open(log, "w") as handle:
                handle.write("started\n" + SA_WARNED + "\n" + SA_LOGGED + "\n")  # one warning, said twice
                handle.flush()
                await asyncio.sleep(POLL_S * 3)
                seen_while_running = read_warnings(out)
                handle.write("Task was destroyed but it is pending!\ntask: <Task pending name='Task-1'")  # no newline
            with open(log, "a") as handle:
                handle.write(">\nshutting down\n")  # its last words, after the watch stopped polling
        return seen_while_running

    seen = asyncio.run(service_writing())
    assert [row["kind"] for row in seen] == ["gc_cleanup"]
    assert warning_counts(out) == {"gc_cleanup": 1, "task_destroyed": 1}
    assert warning_counts(out, end=float(seen[0]["t"]) - 1) == {}


def test_a_restarted_service_starts_a_new_log(tmp_path: Path) -> None:
    log, out = tmp_path / "target.log", tmp_path / "service-warnings.csv"

    async def restarted() -> None:
        async with watch_log(log, out):
            log.write_text("x" * 500 + "\n")
            await asyncio.sleep(POLL_S * 2)
            log.write_text("Task was destroyed but it is pending!\n")  # --isolate: the file starts again
            await asyncio.sleep(POLL_S * 2)

    asyncio.run(restarted())
    assert warning_counts(out) == {"task_destroyed": 1}
