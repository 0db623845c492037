"""The collector against a real server: a connection the test opens appears, then disappears."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import psycopg

from drainwatch.plan import Match
from drainwatch.provision.postgres import Database
from drainwatch.sample.collector import run_collector


def test_collector_sees_a_connection_come_and_go(pg: Database, tmp_path: Path) -> None:
    out = tmp_path / "samples.csv"
    stop = threading.Event()
    worker = threading.Thread(
        target=run_collector,
        args=(pg.dsn, Match(application_name="dw-test-probe%"), out),
        kwargs={"interval": 0.05, "stop": stop},
    )
    worker.start()
    try:
        time.sleep(0.5)
        conn = psycopg.connect(pg.dsn, application_name="dw-test-probe-1")
        conn.execute("SELECT 1")  # leaves it idle in transaction (no autocommit)
        time.sleep(0.5)
        conn.rollback()
        time.sleep(0.5)
        conn.close()
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(10)
    rows = list(csv.DictReader(out.open()))
    totals = [int(r["total"]) for r in rows]
    iit = [int(r["idle_in_transaction"]) for r in rows]
    assert len(rows) >= 30  # 20 Hz for two seconds, give or take the start
    assert totals[0] == 0 and totals[-1] == 0  # its own connection is never counted
    assert max(totals) == 1 and max(iit) == 1
    first_iit = iit.index(1)
    assert 0 in totals[:first_iit]
    assert any(t == 1 and i == 0 for t, i in zip(totals[first_iit:], iit[first_iit:]))  # idle after rollback
    assert all(r["gap"] == "0" for r in rows)
