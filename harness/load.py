"""Locust, run headless as a subprocess.

The orchestrator never imports locust: importing it monkey-patches the whole process
with gevent. Locust writes its own CSVs into the run directory.
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.config import SCENARIOS_DIR
from harness.errors import UsageError
from harness.processes import managed_process, tail

# In-flight requests get this long to finish when the load phase ends. Locust's default
# of 0 cuts them, which is a disconnect storm of its own that drainwatch did not ask for.
STOP_TIMEOUT = 5.0


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


def scenario_file(name: str) -> Path:
    return SCENARIOS_DIR / f"{name}.py"


def locust_argv(plan: LoadPlan) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(plan.locustfile), "--headless",
        "--host", plan.host, "--users", str(plan.users), "--spawn-rate", f"{plan.spawn_rate:g}",
        "--run-time", f"{max(1, math.ceil(plan.seconds))}s", "--stop-timeout", f"{STOP_TIMEOUT:g}",
        "--csv", str(plan.csv_prefix), "--csv-full-history", "--only-summary",
        "--exit-code-on-error", "0", "--loglevel", "WARNING",
    ]  # fmt: skip


async def run_load(plan: LoadPlan, on_start: Callable[[int], None] | None = None) -> int:
    """Run Locust to the end of its run time; return its exit code.

    Raises UsageError when Locust refuses the locustfile. On cancellation Locust gets
    SIGTERM, which makes it stop its users and still write its CSVs.
    """
    async with managed_process(
        locust_argv(plan), name="locust", log_path=plan.log_path, env=plan.env,
        stop_signal=signal.SIGTERM, grace=STOP_TIMEOUT + 5,
    ) as proc:  # fmt: skip
        if on_start is not None:
            on_start(proc.pid)
        code = await proc.wait()
    if code not in (0, 1):
        message = tail(plan.log_path, 3)
        if "No User class found" in message or "ImportError" in message or "Error" in message:
            raise UsageError(
                f"locust could not run {plan.locustfile}: {message}",
                hint="run `locust -f FILE --headless -t 1s` alone to see the full error",
            )
    return code

