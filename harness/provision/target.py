"""The service under test: the bundled demo service drainwatch starts, or a URL it is given."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from drainwatch import demo_service as demo
from drainwatch.errors import TargetProblem
from drainwatch.instrument import POOL_VIEW_PATH
from drainwatch.provision.processes import free_port, spawn, stop_process, tail


@dataclass(frozen=True)
class Target:
    url: str
    pid: int | None  # the process, when drainwatch started it
    app_name: str | None  # application_name pattern of its backends, when known
    pool_limit: int | None
    pool_view_path: str | None = None  # where it exposes drainwatch.instrument's pool view
    restart: Callable[[], Awaitable[int]] | None = field(default=None, compare=False, repr=False)  # → new pid


async def read_pool_view(target: Target) -> dict[str, Any] | None:
    """The target's own pool counts, or None when it does not expose them (or does not answer)."""
    if not target.pool_view_path:
        return None
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            resp = await client.get(target.url + target.pool_view_path)
            resp.raise_for_status()
            return dict(resp.json())
    except (httpx.HTTPError, ValueError):
        return None


def demo_app_pattern(variant: str) -> str:
    return f"{demo.app_name(variant)}:%"


@asynccontextmanager
async def demo_service(variant: str, dsn: str, log_path: Path) -> AsyncIterator[Target]:
    """Run the demo service under uvicorn on a free loopback port until exit."""
    port = free_port()
    argv = [sys.executable, "-m", "drainwatch.demo_service", "--variant", variant, "--port", str(port)]
    # The DSN goes through the environment, not argv: argv is world-readable in ps.
    env = {demo.DSN_ENV: dsn}
    url = f"http://127.0.0.1:{port}"
    current: list[asyncio.subprocess.Process] = []

    async def start() -> int:
        current[:] = [await spawn(argv, name="target", log_path=log_path, env=env)]
        await wait_until_serving(url, proc=current[0], log_path=log_path)
        return current[0].pid

    async def restart() -> int:
        await stop_process(current[0], name="target", first=signal.SIGINT, grace=8.0)
        return await start()

    try:
        await start()
        yield Target(url=url, pid=current[0].pid, app_name=demo_app_pattern(variant), pool_limit=demo.POOL_LIMIT,
                     pool_view_path=POOL_VIEW_PATH, restart=restart)  # fmt: skip
    finally:
        if current:
            await asyncio.shield(stop_process(current[0], name="target", first=signal.SIGINT, grace=8.0))


async def wait_until_serving(
    url: str, *, proc: asyncio.subprocess.Process | None = None, log_path: Path | None = None, timeout: float = 30
) -> None:
    """Return once ``url`` answers HTTP; raise TargetProblem if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if proc is not None and proc.returncode is not None:
                raise TargetProblem(
                    f"the demo service exited at start: {tail(log_path) if log_path else ''}",
                    hint="read logs/target.log in the run folder",
                )
            try:
                await client.get(url.rstrip("/") + "/")
                return
            except httpx.HTTPError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise TargetProblem(
                        f"nothing answers HTTP at {url} ({type(exc).__name__})",
                        hint="start the service first, or fix --target-url",
                    ) from None
            await asyncio.sleep(0.1)


@asynccontextmanager
async def external_target(url: str, pool_limit: int | None, pool_view_path: str | None = None) -> AsyncIterator[Target]:
    """A service drainwatch was given: check it answers HTTP; never stop it."""
    await wait_until_serving(url, timeout=3)
    yield Target(url=url.rstrip("/"), pid=None, app_name=None, pool_limit=pool_limit, pool_view_path=pool_view_path)
