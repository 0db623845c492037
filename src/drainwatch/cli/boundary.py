"""The one error boundary: every way a command can end becomes one line and a documented exit code.

    0 PASS · 1 LEAK · 4 SATURATED   only ever from a verdict
    2                        usage or environment error (DrainwatchError, click usage), or verdict ERROR
    3                        internal error: drainwatch itself broke; the traceback is kept in a file
    130 / 143                interrupted by SIGINT / SIGTERM (what was collected is written first)

Tracebacks reach the terminal only with ``-v``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from drainwatch.errors import EXIT_INTERNAL, EXIT_USAGE, DrainwatchError, Interrupted
from drainwatch.provision.processes import hurry
from drainwatch.rundir import RUN_DIR_NOTE

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)
log = logging.getLogger("drainwatch")

T = TypeVar("T")


def main(cli: click.Group) -> None:
    """Run the command group ``cli`` with ``sys.argv`` and exit with its documented code."""
    verbose = False
    try:
        with cli.make_context("drainwatch", sys.argv[1:]) as ctx:
            verbose = bool(ctx.params.get("verbose"))
            code = cli.invoke(ctx)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "drainwatch"
        _error(f"{exc.format_message()}", f"see `{command} --help`")
        sys.exit(EXIT_USAGE)
    except click.Abort:
        sys.exit(130)
    except DrainwatchError as exc:
        if verbose:
            log.error("details", exc_info=exc)
        _error(str(exc), exc.hint)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a malfunction of drainwatch, never a verdict
        kept = keep_traceback(exc)
        if verbose:
            log.error("internal error", exc_info=exc)
        _error(f"internal error: {type(exc).__name__}: {exc}", f"this is a drainwatch bug; the traceback is in {kept}")
        sys.exit(EXIT_INTERNAL)


def _error(message: str, hint: str = "") -> None:
    err_console.print(f"error: {message}" + (f" — hint: {hint}" if hint else ""), soft_wrap=True, markup=False)


def keep_traceback(exc: BaseException) -> Path:
    """Write the traceback to the run folder's logs/ when the run made one, else to a temp file."""
    text = "".join(traceback.format_exception(exc))
    notes = [n for n in getattr(exc, "__notes__", []) if n.startswith(RUN_DIR_NOTE)]
    folder = Path(notes[-1].removeprefix(RUN_DIR_NOTE)) / "logs" if notes else None
    try:
        if folder is None:
            raise OSError
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "traceback.txt"
        path.write_text(text)
    except OSError:
        handle = tempfile.NamedTemporaryFile(
            "w", prefix=f"drainwatch-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt", delete=False
        )
        with handle:
            handle.write(text)
        path = Path(handle.name)
    return path


def run_interruptible(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGINT/SIGTERM cancel it (so every context manager unwinds) and raise Interrupted.

    The handlers are installed on the run's own loop and removed when it ends. A second
    signal while unwinding kills every child at once instead of waiting out their grace
    periods; the unwinding still writes what was collected.
    """
    received: list[int] = []

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            if received:  # the second one: no more grace periods
                err_console.print(f"\n{signal.Signals(signum).name} again: killing every process now…")
                hurry()
                return
            received.append(signum)
            err_console.print(
                f"\n{signal.Signals(signum).name}: stopping, writing what was collected… (again to force)"
            )
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await coro
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError as exc:
        if received:
            raise Interrupted(received[0]) from exc
        raise
