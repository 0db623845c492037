"""The pytest plugin, in a pytest of its own (pytester, a subprocess) against a real served target.

The inner sessions load the plugin the way a user's do: from the installed entry point.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from drainwatch.cli.run_options import plan_from_options
from drainwatch.errors import UsageError
from tests.helpers import PHASES, REPO

pytestmark = pytest.mark.slow

HEADERS = 'headers = { Authorization = "Bearer secret-token" }\n'
BODY = '[[endpoints]]\npath = "/api/items"\n\n[chaos.error]\nrequest = "GET /api/report"\nexpect = [500]\n'


def _config(folder: Path, variant: str, phases: str = PHASES) -> Path:
    """A config file serving the aiohttp + asyncpg target (auth header, no SQL tags, no /health/db)."""
    module = f"{sys.executable} -m tests.targets.aiohttp_asyncpg"
    path = folder / f"{variant}.toml"
    path.write_text(
        f'[target]\ncommand = "{module} --port {{port}} --variant {variant}"\nsetup = "{module} setup"\n'
        f'cwd = "{REPO}"\n{HEADERS}\n{phases}\n{BODY}'
    )
    return path


def _run_folders(output: str) -> list[Path]:
    return [Path(found) for found in re.findall(r"run folder: (\S+)", output)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_leaky_service_fails_with_the_verdict_and_a_correct_one_passes(pytester: pytest.Pytester) -> None:
    _config(pytester.path, "leaky")
    _config(pytester.path, "correct")
    pytester.makepyfile(
        test_drain="""
        import pytest

        def test_leaky(drainwatch):
            drainwatch.run(config="leaky.toml", mix="steady=2,error=1")

        @pytest.mark.drainwatch(config="correct.toml", mix="steady=2,error=1")
        def test_correct(drainwatch):
            assert drainwatch.result.passed
            assert drainwatch.result.summary["leaked"] == 0
            print("run folder:", drainwatch.result.run_dir)
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", timeout=400)
    output = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)
    assert "FAILED test_drain.py::test_leaky - Failed: drainwatch: LEAK, expected PASS" in output, output
    # every leak is on the report route: the error kind's, and the one preflight's own request left
    assert "most likely  left by `GET /api/report` (" in output and "preflight-error 1)" in output, output
    folders = {folder.name: folder for folder in _run_folders(output)}  # named for their test
    leaky, correct = folders["test_leaky-1"], folders["test_correct-1"]
    assert json.loads((leaky / "summary.json").read_text())["verdict"] == "LEAK"
    assert json.loads((correct / "summary.json").read_text())["verdict"] == "PASS"
    for folder in (leaky, correct):
        started = json.loads((folder / "run.json").read_text())["processes"]
        assert {"postgres", "target"} <= set(started), started
        assert [name for name, pid in started.items() if _alive(pid)] == []


def test_an_interrupted_run_leaves_no_process_behind(pytester: pytest.Pytester) -> None:
    long_load = PHASES.replace('duration = "8s"', 'duration = "60s"')
    _config(pytester.path, "correct", long_load)
    out = pytester.path / "runs"
    pytester.makepyfile(
        test_drain=f"""
        def test_long(drainwatch):
            drainwatch.run(config="correct.toml", out={str(out)!r}, run_id="long")
        """
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_drain.py"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        record = out / "long" / "run.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the load phase runs, or the inner run gives up
            if record.is_file() and "load" in json.loads(record.read_text() or "{}").get("phases", {}):
                break
            assert inner.poll() is None, inner.communicate()[0]
            time.sleep(0.5)
        else:
            pytest.fail("the inner run never reached its load phase")
        inner.send_signal(signal.SIGINT)
        output, _ = inner.communicate(timeout=90)
    finally:
        if inner.poll() is None:
            inner.kill()
    assert inner.returncode == 2, output  # pytest's "interrupted"
    data = json.loads(record.read_text())
    assert data["status"] == "interrupted"
    assert {"postgres", "target", "collector"} <= set(data["processes"]), data["processes"]
    assert [name for name, pid in data["processes"].items() if _alive(pid)] == []
    assert (out / "long" / "report.html").is_file()  # what was collected is written


def test_keywords_are_the_options_of_drainwatch_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no drainwatch.toml to find
    cfg = plan_from_options(
        {
            "serve": "python -m app --port {port}",
            "endpoints": ["GET /a", "POST /b"],
            "headers": ["Authorization: Bearer t"],
            "warmup": "2s",
            "users": 3,
            "isolate": True,
            "cwd": tmp_path,
            "env": {"MODE": "test"},
            "out": tmp_path,
            "run_id": "kw",
        }
    )
    assert cfg.serve == "python -m app --port {port}" and cfg.users == 3 and cfg.warmup == 2.0 and cfg.isolate
    assert [str(r) for r in cfg.traffic.steady] == ["GET /a", "POST /b"]
    assert cfg.serve_cwd == tmp_path and dict(cfg.serve_env) == {"MODE": "test"}
    assert cfg.run_dir == tmp_path / "kw"
    with pytest.raises(UsageError, match="no option 'user'") as bad:
        plan_from_options({"user": 3})
    assert bad.value.hint == "did you mean 'users'?"
    with pytest.raises(UsageError, match="--warmup"):
        plan_from_options({"warmup": "soon"})
