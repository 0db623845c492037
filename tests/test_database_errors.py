"""Database problems a user can cause, against a real server: one line naming the fix, exit 2."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from drainwatch.provision.postgres import Database
from tests.helpers import FAST, drainwatch

SECRET = "Sup3rSecret-42"


@pytest.fixture(scope="module")
def roles(pg: Database) -> Iterator[str]:
    """A password-checked role and a role without pg_monitor on the embedded server."""
    assert pg.data_dir is not None
    host = pg.dsn.split("@", 1)[1].split("/", 1)[0]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE dw_pw LOGIN PASSWORD '{SECRET}'")
        conn.execute("CREATE ROLE dw_plain LOGIN")
        hba = pg.data_dir / "pg_hba.conf"
        original = hba.read_text()
        hba.write_text("host all dw_pw 127.0.0.1/32 scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
        try:
            yield host
        finally:
            hba.write_text(original)
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("DROP DATABASE IF EXISTS dw_secrets WITH (FORCE)")
            conn.execute("DROP OWNED BY dw_pw")
            conn.execute("DROP ROLE dw_pw")
            conn.execute("DROP ROLE dw_plain")


def test_wrong_password(roles: str, tmp_path: Path) -> None:
    proc = drainwatch("run", "--dsn", f"postgresql://dw_pw:wrong@{roles}/postgres", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: PostgreSQL at {roles} rejected the password for user dw_pw — hint: set the right password in PGPASSWORD or ~/.pgpass"
    )
    assert "wrong" not in proc.stderr and not (tmp_path / "r").exists()


def test_password_missing(roles: str, tmp_path: Path) -> None:
    proc = drainwatch(
        "run",
        "--dsn",
        f"postgresql://dw_pw@{roles}/postgres",
        "--out",
        str(tmp_path / "r"),
        env={"PGPASSFILE": str(tmp_path / "none")},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: PostgreSQL at {roles} wants a password for user dw_pw — hint: set PGPASSWORD or add a line to ~/.pgpass"
    )


def test_role_that_cannot_see_other_sessions(roles: str, tmp_path: Path) -> None:
    proc = drainwatch("run", "--dsn", f"postgresql://dw_plain@{roles}/postgres", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: role dw_plain cannot see other sessions in pg_stat_activity — hint: GRANT pg_monitor TO dw_plain; (or connect as a superuser)"
    )


def test_metrics_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = drainwatch("run", "--metrics-port", str(port), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: port {port} (--metrics-port) is already in use — hint: choose another --metrics-port"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_password_never_reaches_the_run_folder(roles: str, tmp_path: Path) -> None:
    """A real run with a password in --dsn: not in run.json, logs, summary, junit or the report."""
    dsn = f"postgresql://dw_pw:{SECRET}@{roles}/dw_secrets"
    with psycopg.connect(f"postgresql://postgres@{roles}/postgres", autocommit=True) as conn:
        conn.execute("GRANT pg_monitor TO dw_pw")
        conn.execute("CREATE DATABASE dw_secrets OWNER dw_pw")
    proc = drainwatch("run", "--variant", "fixed", "--dsn", dsn, "--out", str(tmp_path), "--run-id", "s", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    files = [path for path in (tmp_path / "s").rglob("*") if path.is_file()]
    assert len(files) > 10
    for path in files:
        assert SECRET not in path.read_text(errors="replace"), path
    assert "dw_pw:***@" in (tmp_path / "s" / "run.json").read_text()
