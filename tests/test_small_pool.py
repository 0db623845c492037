"""A small pool is not a leak: a correct service whose pool of 2 serves 20 users queues its
requests in ``acquire()`` and gives every connection back; the same service with a leak is
still LEAK. A bare ASGI app with asyncpg (tests/targets/tiny_pool.py) that serves the pool view.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import config, drainwatch, summary

pytestmark = pytest.mark.slow

SERVED = (
    'pool_view = "/_drainwatch/pool"\n',
    '[[endpoints]]\npath = "/work"\n\n[chaos.error]\nrequest = "GET /fail"\nexpect = [500]\n',
)


@pytest.mark.parametrize(("variant", "verdict", "code"), [("correct", "PASS", 0), ("leaky", "LEAK", 1)])
def test_a_pool_of_two_under_twenty_users(tmp_path: Path, variant: str, verdict: str, code: int) -> None:
    folder = config(tmp_path, "tiny_pool", f"{variant} --pool-view", SERVED[1], SERVED[0])
    proc = drainwatch("run", "--run-id", variant, "--users", "20", "--mix", "steady=4,error=1", "-q", cwd=folder)
    assert proc.returncode == code, proc.stdout + proc.stderr
    found = summary(folder, variant)
    assert found["verdict"] == verdict, found["reasons"]
    (pool,) = found["pool_view"]["pools"].values()
    assert pool["kind"] == "asyncpg" and pool["limit"] == 2
    small = [reason for reason in found["reasons"] if reason.startswith("pool too small for this load")]
    if variant == "correct":
        assert pool["waited"] >= 20 and pool["wait_max_s"] > 0, pool  # 20 users on 2 connections queue
        assert found["leaked"] == 0 and found["probe"]["passed"]
        (note,) = small
        assert f"{pool['waited']} request(s) waited for a connection of asyncpg (limit 2), up to " in note
    else:
        assert found["leaked"] >= 1 and not small  # the note is for a PASS only
        assert any("tests/targets/tiny_pool.py:" in site and "in fail()" in site for site in found["checkout_sites"])
        # no SQL tags: the pool view's request context names the request that took each one
        # (preflight tries GET /fail once too, and that request leaks its connection like the load's)
        held = found["leaked_by_kind"]["held"]
        assert found["leaked"] == held and found["routes"] == {"GET /fail": held}
        assert found["scenarios"]["error"] >= 1 and set(found["scenarios"]) <= {"error", "preflight-error"}
        likely = found["attribution"]["likely"]
        assert sum(likely.values()) == held and set(likely) <= {"error GET /fail", "preflight-error GET /fail"}
