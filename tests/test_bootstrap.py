"""The bootstrap drainwatch puts on a served service's PYTHONPATH: what a real Python process imported,
written by that process (and by the workers it forks), and the service's own sitecustomize still run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    written = {path.stem.removeprefix("stack-") for path in channel.glob("stack-*.json")}
    assert written == {parent, child}
    stack = served_stack(channel, int(parent))
    assert set(stack) == {"python", "asyncpg", "sqlalchemy"}  # not flask nor fastapi: installed, never imported
    assert json.loads((channel / f"stack-{child}.json").read_text())["ppid"] == int(parent)
    assert "sqlalchemy" not in json.loads((channel / f"stack-{parent}.json").read_text())["modules"]  # the worker's
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


# A service taking a connection from an asyncpg pool and keeping it; prints its backend's pid.
HOLDS = """
import asyncio, os, time
import asyncpg

async def main():
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=2)
    conn = await pool.acquire()  # never released: the line drainwatch must name
    print(conn.get_server_pid(), flush=True)
    await asyncio.sleep(1.5)

asyncio.run(main())
"""


def _serve_holding(tmp_path: Path, pg: Any, extra_path: str = "") -> tuple[int, dict[str, Any]]:
    (tmp_path / "holds.py").write_text(HOLDS)
    channel = tmp_path / "stack"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": pg.dsn, "PYTHONPATH": extra_path}
    proc = subprocess.run(
        [sys.executable, "holds.py"],
        env={**env, **bootstrap_env(channel, env)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    view = json.loads(next(channel.glob("pool-*.json")).read_text())
    return int(proc.stdout.split()[0]), view


def test_a_pool_is_recorded_with_no_change_to_the_service(tmp_path: Path, pg: Any) -> None:
    backend, view = _serve_holding(tmp_path, pg)
    assert view["checked_out"] == 1 and view["limit"] == 2
    [taken] = view["checkouts"]
    assert taken["pid"] == backend and taken["stack"][0] == "holds.py:7 in main()"


def test_a_service_whose_environment_lacks_drainwatch_is_recorded_all_the_same(tmp_path: Path, pg: Any) -> None:
    blocked = tmp_path / "blocked" / "drainwatch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('drainwatch is not installed here')\n")
    backend, view = _serve_holding(tmp_path, pg, str(blocked.parent))
    assert view["checkouts"][0]["pid"] == backend and view["checkouts"][0]["stack"][0] == "holds.py:7 in main()"


def test_a_hook_that_fails_leaves_the_service_running(tmp_path: Path, pg: Any) -> None:
    # drainwatch.instrument cannot load: the pool's hook fails, the service does its work, the failure is noted
    blocked = tmp_path / "blocked" / "drainwatch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("")
    (blocked / "instrument.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "holds.py").write_text(HOLDS)
    channel = tmp_path / "stack"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": pg.dsn, "PYTHONPATH": str(blocked.parent)}
    proc = subprocess.run(
        [sys.executable, "holds.py"], env={**env, **bootstrap_env(channel, env)}, cwd=tmp_path, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.split()[0].isdigit(), proc.stderr
    [note] = channel.glob("hooks-*.txt")
    assert "recording a Pool: RuntimeError: broken on purpose" in note.read_text()
