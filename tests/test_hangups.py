"""Did a hang-up reach the server's work: matching cancels and busy backends to hang-ups (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drainwatch.judge.hangups import hangups, sentence
from drainwatch.run.evidence import cancel_times


def _gone(end: float, name: str = "/chat", outcome: str = "chaos") -> dict:
    return {
        "start": end - 0.2,
        "end": end,
        "scenario": "disconnect",
        "method": "POST",
        "name": name,
        "outcome": outcome,
    }


def test_a_cancel_just_after_a_hang_up_is_that_hang_ups() -> None:
    requests = [_gone(10.0), _gone(10.1), _gone(20.0), _gone(30.0, outcome="failed")]  # a 404 hung up on nothing
    found = hangups(requests, [], cancels=[10.05, 10.3, 25.0])  # 25.0: five seconds late, nobody's
    assert found == {
        "disconnect POST /chat": {"hangups": 3, "cancelled": 2, "kept_working": 0, "unseen": 1, "server_log": True}
    }


def test_a_backend_busy_with_no_request_in_flight_was_left_working() -> None:
    requests = [_gone(10.0, "/work"), _gone(10.05, "/work"), _gone(15.0, "/work")]
    requests.append({"start": 14.0, "end": 17.0, "scenario": "steady", "name": "/items"})  # in flight at 15.5
    active = [(10.5, 1), (11.0, 1), (11.5, 0), (15.5, 1), (16.0, 1)]  # one zombie after 10.0; at 15.5 the steady one
    found = hangups(requests, active, cancels=None)["disconnect POST /work"]
    # the one busy backend after 10.0 is given to one hang-up, not two; at 15.5 the steady request explains it
    assert found == {"hangups": 3, "cancelled": 0, "kept_working": 1, "unseen": 2, "server_log": False}
    assert sentence("disconnect POST /work", found) == (
        "disconnect POST /work: 3 client(s) hung up; whether the server stopped their queries is unknown (no server "
        "log); at least 1 left a query running for nobody; 2 left no trace on the server (no query of theirs was "
        "running when they hung up)"
    )


def test_no_disconnect_kind_no_table() -> None:
    assert hangups([{"start": 1.0, "end": 2.0, "scenario": "steady"}], [(1.5, 1)], []) == {}


def test_cancels_are_read_from_the_servers_log(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    log.write_text(
        "2026-12-01 12:40:20.250 UTC [4242] ERROR:  canceling statement due to user request\n"
        "2026-12-01 12:40:20.250 UTC [4242] STATEMENT:  SELECT pg_sleep(2.000)\n"
        "2026-12-01 12:40:21 UTC [4243] ERROR:  canceling statement due to statement timeout\n"
    )
    assert cancel_times(log) == [pytest.approx(1796128820.25)]
    assert cancel_times(tmp_path / "none.log") is None  # an external server: no log of ours
