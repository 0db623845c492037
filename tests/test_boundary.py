"""The one error boundary: a malfunction of drainwatch is exit 3 with one line, never a verdict's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from drainwatch.cli import boundary
from drainwatch.rundir import RUN_DIR_NOTE
from tests.helpers import drainwatch


def _broken(run_dir: Path | None = None) -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    @cli.command()
    def explode() -> None:
        exc = RuntimeError("a bug in drainwatch")
        if run_dir is not None:
            exc.add_note(f"{RUN_DIR_NOTE}{run_dir}")
        raise exc

    return cli


def test_an_unexpected_exception_is_exit_3_with_the_traceback_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["drainwatch", "explode"])
    with pytest.raises(SystemExit) as stopped:
        boundary.main(_broken(tmp_path / "run"))
    assert stopped.value.code == 3
    kept = tmp_path / "run" / "logs" / "traceback.txt"
    assert capsys.readouterr().err.strip() == (
        f"error: internal error: RuntimeError: a bug in drainwatch — hint: this is a "
        f"drainwatch bug; the traceback is in {kept}"
    )
    assert "Traceback (most recent call last)" in kept.read_text()


def test_without_a_run_folder_the_traceback_goes_to_a_temp_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["drainwatch", "explode"])
    with pytest.raises(SystemExit) as stopped:
        boundary.main(_broken())
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 3 and "\n" not in err
    kept = Path(err.rsplit("the traceback is in ", 1)[1])
    assert kept.is_file() and "RuntimeError: a bug in drainwatch" in kept.read_text()
    kept.unlink()


@pytest.mark.parametrize("out", ["/proc/forbidden", "/sys/x", "{a_file}/reports"])
def test_output_folders_a_ci_runner_cannot_write(out: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = out.format(a_file=tmp_path / "file")  # a folder under a file cannot be made either
    proc = drainwatch("run", "--out", out, "-q")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: output folder {out} is not writable — hint: choose another with --out DIR"


def test_exit_code_3_is_documented() -> None:
    out = subprocess.run([sys.executable, "-m", "drainwatch", "run", "--help"], capture_output=True, text=True).stdout
    assert "3 internal error" in out
