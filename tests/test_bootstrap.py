"""The bootstrap drainwatch puts on a served service's PYTHONPATH: what a real Python process imported,
written by that process (and by the workers it forks), and the service's own sitecustomize still run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from drainwatch.provision.target import bootstrap_env, served_stack

# Imports asyncpg (a stack distribution), forks a worker that imports sqlalchemy, then waits for both
# bootstrap threads to write before it ends.
SERVICE = """
import os, time, asyncpg
pid = os.fork()
if pid == 0:
    import sqlalchemy
    time.sleep(1.5)
    os._exit(0)
time.sleep(1.5)
os.waitpid(pid, 0)
print(os.getpid(), pid)
"""


def test_the_stack_is_what_the_process_tree_imported(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE'] = 'ran'\n")
    channel = tmp_path / "stack"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(own)}
    proc = subprocess.run(
        [sys.executable, "-c", SERVICE + "print(os.environ.get('OWN_SITECUSTOMIZE'))"],
        env={**env, **bootstrap_env(channel, env)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    parent, child, own_ran = proc.stdout.split()
    assert own_ran == "ran"  # the service's own sitecustomize, further along its path
    written = {path.stem for path in channel.glob("*.json")}
    assert written == {parent, child}
    stack = served_stack(channel, int(parent))
    assert set(stack) == {"python", "asyncpg", "sqlalchemy"}  # not flask nor fastapi: installed, never imported
    assert json.loads((channel / f"{child}.json").read_text())["ppid"] == int(parent)
    assert "sqlalchemy" not in json.loads((channel / f"{parent}.json").read_text())["modules"]  # the worker's
    assert served_stack(channel, 1) == {} and served_stack(tmp_path / "none", int(parent)) == {}


def test_without_a_channel_the_bootstrap_writes_nothing(tmp_path: Path) -> None:
    env = bootstrap_env(tmp_path / "stack", {})
    env.pop("DRAINWATCH_CHANNEL")
    proc = subprocess.run(
        [sys.executable, "-c", "import asyncpg, sys; print('sitecustomize' in sys.modules)"],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert proc.stdout.split() == ["True"]  # loaded, and quiet
    assert not list(tmp_path.iterdir())
