"""``--dsn`` against a PostgreSQL drainwatch did not start (the system one on 127.0.0.1:5432)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import FAST, SYSTEM_DSN, drainwatch, needs_system_pg

pytestmark = [pytest.mark.slow, needs_system_pg]


def test_fixed_variant_against_external_server(tmp_path: Path) -> None:
    proc = drainwatch(
        "run", "--variant", "fixed", "--dsn", SYSTEM_DSN, "--out", str(tmp_path), "--run-id", "ext", *FAST
    )
    summary = json.loads((tmp_path / "ext" / "summary.json").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["verdict"] == "PASS"
    record = json.loads((tmp_path / "ext" / "run.json").read_text())
    assert record["database"]["embedded"] is False and record["database"]["dsn"] == SYSTEM_DSN


def test_missing_database_names_the_fix(tmp_path: Path) -> None:
    proc = drainwatch("run", "--dsn", "postgresql://postgres@127.0.0.1:5432/no_such_db", "--out", str(tmp_path), "-q")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: database 'no_such_db' does not exist at 127.0.0.1:5432 — hint: create it (createdb) or fix the database name in --dsn"
    )
