"""Steady traffic with exactly one leaked connection, half-way through the load.

    drainwatch run --variant fixed --locustfile bench/leak_one_locustfile.py --duration 60s

Every user sends ChaosUser.steady() requests; the first task that runs once half the run
time has passed sends ``POST /debug/leak-one`` instead, once in the whole run: the demo
service (either variant) checks out one raw asyncpg connection and never gives it back.
The smallest leak there is, for bench/sensitivity.py.

Half-way is taken from Locust's ``--run-time`` (drainwatch always passes one); without it,
from ``DRAINWATCH_LEAK_AFTER_S`` (default 15). One Locust process only: the flag is per
process, so with ``--workers N`` each worker would leak one.
"""

from __future__ import annotations

import os
import time

from locust import events, task

from drainwatch.scenarios.chaos import ChaosUser

_leaked = False  # module-level: all users of this process share it
_started: float | None = None


@events.test_start.add_listener
def _on_test_start(**_: object) -> None:
    global _started
    _started = time.monotonic()


class LeakOneUser(ChaosUser):
    @task
    def steady_or_leak_once(self) -> None:
        global _leaked
        # Users are greenlets in one thread: nothing yields between this check and the set.
        if not _leaked and _started is not None and time.monotonic() - _started >= self._leak_after():
            _leaked = True
            self.leak_one()
        else:
            self.steady()

    def _leak_after(self) -> float:
        run_time = getattr(self.environment.parsed_options, "run_time", None)
        return run_time / 2 if run_time else float(os.environ.get("DRAINWATCH_LEAK_AFTER_S", "15"))

    def leak_one(self) -> None:
        # Through the public helpers: an ordinary request from the client's side. The
        # scenario header is overridden so the verdict's attribution can be checked.
        self.steady(self.endpoint("POST", "/debug/leak-one", headers={"X-Drainwatch-Scenario": "leak-one"}))
