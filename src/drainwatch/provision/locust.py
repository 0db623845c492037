"""Locust, run headless as a subprocess.

The orchestrator never imports locust: importing it monkey-patches the whole process
with gevent. Locust writes its own CSVs into the run directory.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from drainwatch import scenarios
from drainwatch.errors import UsageError
from drainwatch.provision.processes import free_port, managed_process, tail

# In-flight requests get this long to finish when the load phase ends. Locust's default
# of 0 cuts them, which is a disconnect storm of its own that drainwatch did not ask for.
STOP_TIMEOUT = 5.0
# The locustfiles, wherever the package is installed (``locust -f`` needs a path).
SCENARIOS_DIR = Path(scenarios.__file__).resolve().parent


@dataclass(frozen=True)
class LoadPlan:
    locustfile: Path
    host: str
    users: int
    spawn_rate: float
    seconds: float
    csv_prefix: Path
    log_path: Path
    env: dict[str, str]
    workers: int = 0  # >0: Locust master plus this many local worker processes


async def check_locustfile(path: Path, env: dict[str, str], timeout: float = 60.0) -> None:
    """Have Locust import ``path`` and list its users (``--list``) before anything starts: a typo
    in a locustfile costs a second here, not a run whose load then sends nothing. Raises
    UsageError with Locust's own last line."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "locust", "-f", str(path), "--list"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:  # timed out, or the run was interrupted: it is ours to end
            proc.kill()
            await proc.wait()
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    if proc.returncode != 0:
        raise UsageError(
            f"locust could not load {path}: {lines[-1].strip() if lines else f'exit code {proc.returncode}'}",
            hint=f"run `locust -f {path} --list` to see the whole error",
        )


def scenario_file(name: str) -> Path:
    return SCENARIOS_DIR / f"{name}.py"


def locust_argv(plan: LoadPlan, master_port: int | None = None) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(plan.locustfile),
        "--headless",
        "--host",
        plan.host,
        "--users",
        str(plan.users),
        "--spawn-rate",
        f"{plan.spawn_rate:g}",
        "--run-time",
        f"{max(1, math.ceil(plan.seconds))}s",
        "--stop-timeout",
        f"{STOP_TIMEOUT:g}",
        "--csv",
        str(plan.csv_prefix),
        "--csv-full-history",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    if master_port is not None:
        argv += [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            str(plan.workers),
            "--expect-workers-max-wait",
            "30",
        ]
    return argv


def worker_argv(locustfile: Path, master_host: str, master_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
        "--loglevel",
        "WARNING",
    ]


async def run_load(plan: LoadPlan, on_start: Callable[[str, int], None] | None = None) -> int:
    """Run Locust to the end of its run time; return its exit code.

    With ``plan.workers``, Locust's own master/worker mode spreads the users over local
    worker processes. Raises UsageError when Locust refuses the locustfile. On
    cancellation Locust gets SIGTERM, which makes it stop its users and still write its CSVs.
    """
    master_port = free_port() if plan.workers else None
    async with AsyncExitStack() as stack:
        master = await stack.enter_async_context(
            managed_process(
                locust_argv(plan, master_port),
                name="locust",
                log_path=plan.log_path,
                env=plan.env,
                stop_signal=signal.SIGTERM,
                grace=STOP_TIMEOUT + 5,
            )
        )
        if on_start is not None:
            on_start("locust", master.pid)
        for i in range(plan.workers):
            assert master_port is not None
            worker = await stack.enter_async_context(
                managed_process(
                    worker_argv(plan.locustfile, "127.0.0.1", master_port),
                    name=f"locust-worker-{i + 1}",
                    log_path=plan.log_path.with_name(f"{plan.log_path.stem}-worker-{i + 1}.log"),
                    env=plan.env,
                    stop_signal=signal.SIGTERM,
                    grace=STOP_TIMEOUT + 5,
                )
            )
            if on_start is not None:
                on_start(f"locust-worker-{i + 1}", worker.pid)
        code = await master.wait()
    # Locust exits 1 both for a run with failures and for a locustfile it could not import;
    # only the first leaves its totals behind.
    refused = code == 1 and not Path(f"{plan.csv_prefix}_stats.csv").exists()
    if code not in (0, 1) or refused:
        message = tail(plan.log_path, 1 if refused else 3)
        raise UsageError(
            f"locust could not run {plan.locustfile}: {message or f'exit code {code}'}",
            hint="run `locust -f FILE --headless -t 1s` alone to see the full error",
        )
    return code
