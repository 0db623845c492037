"""Bad input: one line that names the fix, exit code 2, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from drainwatch.provision.processes import free_port
from tests.helpers import drainwatch, needs_system_pg


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--duration", "soon"],
            "error: --duration 'soon' is not a duration — hint: write it like 30s, 2m, 1m30s or 500ms",
        ),
        (["--settle", "-3s"], "error: --settle must be positive, got '-3s' — hint: give it a value above zero"),
        (
            ["--users", "0"],
            "error: --users must be between 1 and 100,000, got 0 — hint: try --users 20; past a few thousand, add --workers",
        ),
        (
            ["--users", "18446744073709551616"],
            "error: --users must be between 1 and 100,000, got 18,446,744,073,709,551,616 — hint: try --users 20",
        ),
        (["--serve", ""], "error: --serve is empty — hint: give --serve a value, or leave it out for its default"),
        (["--run-id", ""], "error: --run-id is empty — hint: give --run-id a value, or leave it out for its default"),
        (
            ["--run-id", "r" * 5000],
            "error: --run-id is 5000 bytes long, more than a folder name can take (200) — hint: use a short name",
        ),
        (
            ["--probe-path", "/a b"],
            "error: --probe-path '/a b' is not a path — hint: write it like --probe-path /health/db",
        ),
        (
            ["--rate", "0"],
            "error: --rate must be a number of requests per second above 0, got 0 — hint: e.g. --rate 40",
        ),
        (
            ["--locustfile", "nope.py"],
            "error: locustfile nope.py does not exist — hint: check the path given to --locustfile",
        ),
        (
            ["--mix", "chaos=3"],
            "error: unknown chaos kind 'chaos' in --mix — hint: use some of steady, disconnect, timeout, error, like steady=4,disconnect=2",
        ),
        (
            ["--dsn", "postgresql://u@h:notaport/db"],
            "error: port 'notaport' in --dsn is not a number — hint: write it like postgresql://USER@127.0.0.1:5432/DBNAME",
        ),
        (
            ["--dsn", "nonsense"],
            'error: --dsn is not a valid connection string (missing "=" after "nonsense" in connection info string) — hint: write it like postgresql://USER@127.0.0.1:5432/DBNAME',
        ),
        (
            ["--target-url", "ftp://x"],
            "error: --target-url 'ftp://x' is not an http(s) URL — hint: write it like http://127.0.0.1:8000",
        ),
        (["--target-url", "http://127.0.0.1:9"], "error: --target-url needs --dsn"),
        (["--variant", "sturdy"], "error: Invalid value for '--variant'"),
        (
            ["--serve", "nosuchprogram --port {port}", "-e", "GET /"],
            "error: --serve: there is no program 'nosuchprogram' on PATH — hint: install it in this environment",
        ),
        (
            ["--serve", "python -m x --port {port}", "-e", "GET /", "--chaos", "oops=GET /x"],
            "error: --chaos 'oops=GET /x' does not name a chaos kind — hint: write it like --chaos \"error=GET /orders/999 404\"",
        ),
        (
            ["--serve", "python -m x --port {port}", "-e", "GET /", "--chaos", "error=GET /x 4o4"],
            "error: --chaos 'error=GET /x 4o4': '4o4' is not a list of HTTP statuses",
        ),
        (
            ["--serve", "python -m x --port {port}", "-e", "GET /", "--chaos", "disconnect=GET /x 500"],
            "error: --chaos 'disconnect=GET /x 500': a hang-up expects no status — hint: drop the statuses",
        ),
        (
            ["--serve", "python -m x --port {port}", "-e", "GET /", "--chaos", "error=fetch it"],
            "error: --chaos error 'fetch it' is not a request",
        ),
    ],
)
def test_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    proc = drainwatch("run", "--out", str(out), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # validated before anything was created


def test_output_folder_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = drainwatch("run", "--out", str(blocker))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"error: --out {blocker} is a file, not a folder — hint: choose a folder with --out DIR"
    )
    empty = drainwatch("run", "--out", "")
    assert empty.returncode == 2
    assert empty.stderr.strip() == "error: --out is empty — hint: give --out a value, or leave it out for its default"


def test_locustfile_without_user_class(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    proc = drainwatch("run", "--out", str(tmp_path / "r"), "--locustfile", str(empty))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: locustfile {empty} defines no user class — hint: define a class that subclasses HttpUser or FastHttpUser"
    )


def test_unreachable_database(tmp_path: Path) -> None:
    port = free_port()
    proc = drainwatch(
        "run", "--out", str(tmp_path / "r"), "--dsn", f"postgresql://postgres@127.0.0.1:{port}/postgres", "-q"
    )
    assert proc.returncode == 2
    assert not (tmp_path / "r").exists()
    line = proc.stderr.strip()
    assert line.startswith(f"error: cannot reach PostgreSQL at 127.0.0.1:{port}")
    assert line.endswith("hint: is the server running and listening there? check host and port in --dsn")
    assert "Traceback" not in proc.stderr


def test_password_of_an_unreachable_server_is_not_printed(tmp_path: Path) -> None:
    port = free_port()
    proc = drainwatch(
        "run",
        "--out",
        str(tmp_path),
        "--run-id",
        "r",
        "-q",
        "--dsn",
        f"postgresql://app:Sup3rSecret@127.0.0.1:{port}/postgres",
    )
    assert proc.returncode == 2
    assert "Sup3rSecret" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # refused before the run folder was made


def test_help_teaches() -> None:
    proc = drainwatch("run", "--help")
    assert proc.returncode == 0
    for words in (
        "--variant",
        "--dsn",
        "--target-url",
        "--duration",
        "--settle",
        "--interval",
        "Exit codes: 0 PASS, 1 LEAK",
    ):
        assert words in proc.stdout


@needs_system_pg
def test_unreachable_target(tmp_path: Path) -> None:
    port = free_port()
    proc = drainwatch(
        "run",
        "--out",
        str(tmp_path / "r"),
        "--target-url",
        f"http://127.0.0.1:{port}",
        "--dsn",
        "postgresql://postgres@127.0.0.1:5432/test",
        "-e",
        "GET /items",
        "-q",
    )
    assert proc.returncode == 2
    assert not (tmp_path / "r").exists()
    assert proc.stderr.strip() == (
        f"error: nothing answers HTTP at http://127.0.0.1:{port} (ConnectError) — hint: start "
        "the service first, or fix --target-url"
    )


def test_unreachable_target_is_checked_after_the_database(tmp_path: Path) -> None:
    db_port, port = free_port(), free_port()
    proc = drainwatch(
        "run",
        "--out",
        str(tmp_path / "r"),
        "--target-url",
        f"http://127.0.0.1:{port}",
        "--dsn",
        f"postgresql://postgres@127.0.0.1:{db_port}/test",
        "-e",
        "GET /items",
        "-q",
    )
    assert proc.returncode == 2 and not (tmp_path / "r").exists()
    assert proc.stderr.strip().startswith(f"error: cannot reach PostgreSQL at 127.0.0.1:{db_port}")
