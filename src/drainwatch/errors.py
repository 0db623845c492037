"""The exceptions drainwatch raises, and the exit codes they map to.

    DrainwatchError            a malfunction or an environment drainwatch cannot work in
    ├── UsageError             bad input: flags, config, files          (exit 2)
    └── EnvironmentProblem     the world is not as needed               (exit 2)
        ├── DatabaseProblem    PostgreSQL cannot be started, reached or watched
        └── TargetProblem      the service under test cannot be started or reached

Any other exception is a drainwatch malfunction: exit 3, its traceback kept in a file.
Every error carries a one-line ``hint`` that names the fix. The CLI is the only place
that turns them into output and an exit code. The system under test failing (a leak, a
500 storm, a pool exhausted) is never an exception: it is data in the verdict.
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_LEAK = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3  # drainwatch itself broke: never a verdict
EXIT_SATURATED = 4  # the service stopped serving under the load, and gave every connection back
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in a (nested) group: a task group wraps the one error it met."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


class DrainwatchError(Exception):
    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(DrainwatchError):
    pass


class EnvironmentProblem(DrainwatchError):
    pass


class DatabaseProblem(EnvironmentProblem):
    pass


class TargetProblem(EnvironmentProblem):
    pass


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind everything, write what was collected."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
