"""Child processes owned by an async context manager: started, logged, always ended.

Children run in their own session so a terminal's Ctrl-C reaches drainwatch only;
drainwatch then stops them in the order it chooses (see ``drainwatch.run.execute``). Stopping
escalates: the polite signal, then SIGTERM, then SIGKILL, each after a grace period. On Linux
each child also gets a parent-death signal: when drainwatch itself is killed (``kill -9``, an
OOM killer, a CI runner's timeout) the kernel ends its children, which no ``finally`` can.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from drainwatch.errors import EnvironmentProblem

log = logging.getLogger(__name__)

_live: set[asyncio.subprocess.Process] = set()  # every child still running, for hurry()
_hurry = False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (never 5432: that one is taken or reserved)."""
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port != 5432:
            return port


_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _dying_with(parent: int, death_signal: int) -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send ``death_signal`` to the child when ``parent`` dies
    (Linux's PR_SET_PDEATHSIG, set after the child took its user: a change of user clears it),
    and ends the child at once when the parent died before it was set. None where unsupported."""
    global _libc
    if sys.platform != "linux":
        return None
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    prctl = _libc.prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), death_signal)

    return arm


def hurry() -> None:
    """Stop everything now: SIGKILL every live child, and make later stops skip the grace periods
    (a second Ctrl-C). Nothing is orphaned, and the run still writes what it collected."""
    global _hurry
    _hurry = True
    for proc in list(_live):
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass


async def spawn(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    death_signal: int = signal.SIGKILL,
    **popen: Any,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log_path``; it gets
    ``death_signal`` if drainwatch dies first (PostgreSQL: SIGQUIT, its immediate shutdown)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as sink:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_dying_with(os.getpid(), death_signal),
                **popen,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            # the program (or the folder it runs in) is not there: a command to fix, not a drainwatch bug
            where = f" in {popen['cwd']}" if popen.get("cwd") else ""
            raise EnvironmentProblem(
                f"cannot start {name}: {argv[0]!r}{where}: {exc.strerror or exc}",
                hint="check the command (for your service: --serve or [target] command) and that it is installed",
            ) from exc
    log.debug("started %s (pid %s): %s", name, proc.pid, " ".join(argv))
    _live.add(proc)
    return proc


@asynccontextmanager
async def managed_process(
    argv: Sequence[str],
    *,
    name: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGINT,
    grace: float = 10.0,
    **popen: Any,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` (see ``spawn``) and stop it on exit, however the block ends."""
    proc = await spawn(argv, name=name, log_path=log_path, env=env, **popen)
    try:
        yield proc
    finally:
        await asyncio.shield(stop_process(proc, name=name, first=stop_signal, grace=grace))


async def stop_process(
    proc: asyncio.subprocess.Process, *, name: str, first: int = signal.SIGINT, grace: float = 10.0
) -> int | None:
    """End ``proc``: ``first``, then SIGTERM, then SIGKILL; then whatever is left of its tree (a
    gunicorn master's workers still busy with a request): every descendant it had, and its process
    group, get SIGKILL. Returns its exit code."""
    tree = _descendants(proc.pid)
    steps = ((first, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))
    for sig, wait in steps[2:] if _hurry else steps:
        if proc.returncode is not None:
            break
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            await asyncio.wait_for(proc.wait(), wait)
        except TimeoutError:
            log.warning("%s (pid %s) still running %.0f s after %s", name, proc.pid, wait, signal.Signals(sig).name)
    _live.discard(proc)
    if left := _end_tree(proc.pid, tree + _descendants(proc.pid)):
        log.warning("%s (pid %s) left %d process(es) of its own running: killed", name, proc.pid, left)
    return proc.returncode


def _descendants(pid: int) -> list[Any]:
    """Every live descendant of ``pid`` (psutil processes), found by parentage, not by name."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _end_tree(root: int, tree: list[Any]) -> int:
    """SIGKILL what is left of ``root``'s tree and its process group (a child drainwatch started in
    a session of its own leads it); how many were still running."""
    import psutil

    left = 0
    for child in tree:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()
                left += 1
        except psutil.Error:
            continue
    try:
        os.killpg(root, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return left


class Child:
    """One child that can be restarted: the same argv, log and environment, a new process each start."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGINT,
        grace: float = 10.0,
        **popen: Any,
    ) -> None:
        self.argv, self.name, self.log_path, self.env = list(argv), name, log_path, env
        self.stop_signal, self.grace, self.popen = stop_signal, grace, popen
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    async def start(self) -> asyncio.subprocess.Process:
        self.proc = await spawn(self.argv, name=self.name, log_path=self.log_path, env=self.env, **self.popen)
        return self.proc

    async def stop(self) -> int | None:
        """Stop the current process (escalating, see ``stop_process``); shielded from cancellation."""
        if self.proc is None:
            return None
        return await asyncio.shield(stop_process(self.proc, name=self.name, first=self.stop_signal, grace=self.grace))

    async def restart(self) -> asyncio.subprocess.Process:
        await self.stop()
        return await self.start()


def last_words(path: Path | None, lines: int = 5) -> str:
    """The last lines of a log for an error message, or that it printed nothing."""
    return (tail(path, lines) if path else "") or "it printed nothing"


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` non-empty lines of a log, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
