"""The collector's optional Prometheus endpoint (``--metrics-port``), served with aiohttp.

It serves the latest sample only, so a Grafana user can watch a long soak live; the
CSV stays the record. aiohttp runs on its own event loop in a daemon thread because the
collector's sampling loop is plain blocking code with a monotonic schedule.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from drainwatch.sample.collector import Sample

STATE_COLUMNS = ("active", "idle", "idle_in_transaction", "idle_in_transaction_aborted", "other")


def render(sample: Sample | None, gaps: int) -> str:
    """Prometheus text exposition of one sample (pure)."""
    lines = [
        "# HELP drainwatch_connections The target's client backends in pg_stat_activity, by state.",
        "# TYPE drainwatch_connections gauge",
    ]
    if sample is not None and not sample.gap:
        lines += [
            f'drainwatch_connections{{state="{state.replace("_", " ")}"}} {getattr(sample, state)}'
            for state in STATE_COLUMNS
        ]
        lines += [
            "# HELP drainwatch_connections_total All of the target's client backends.",
            "# TYPE drainwatch_connections_total gauge",
            f"drainwatch_connections_total {sample.total}",
            "# HELP drainwatch_oldest_idle_in_transaction_seconds Age of the oldest idle-in-transaction state.",
            "# TYPE drainwatch_oldest_idle_in_transaction_seconds gauge",
            f"drainwatch_oldest_idle_in_transaction_seconds {sample.oldest_iit_s}",
            "# HELP drainwatch_max_connections The server's max_connections.",
            "# TYPE drainwatch_max_connections gauge",
            f"drainwatch_max_connections {sample.max_connections}",
        ]
    lines += [
        "# HELP drainwatch_collector_gaps_total Samples missed because PostgreSQL could not be reached.",
        "# TYPE drainwatch_collector_gaps_total counter",
        f"drainwatch_collector_gaps_total {gaps}",
        "# HELP drainwatch_up 1 when the latest sample reached PostgreSQL.",
        "# TYPE drainwatch_up gauge",
        f"drainwatch_up {0 if sample is None or sample.gap else 1}",
    ]
    if sample is not None:
        lines += [
            "# TYPE drainwatch_sample_timestamp_seconds gauge",
            f"drainwatch_sample_timestamp_seconds {sample.t:.3f}",
        ]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` on ``host:port`` until ``close()``; ``publish()`` is thread-safe."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sample: Sample | None = None
        self._gaps = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="drainwatch-metrics", daemon=True)

    def publish(self, sample: Sample) -> None:
        self._gaps += sample.gap
        self._sample = sample

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            from drainwatch.errors import UsageError

            raise UsageError(
                f"cannot serve metrics on {self.host}:{self.port} ({self._error})",
                hint="choose a free port with --metrics-port",
            ) from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        from aiohttp import web

        async def metrics(request: Any) -> web.Response:
            return web.Response(text=render(self._sample, self._gaps), content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(runner.setup())
            self._loop.run_until_complete(web.TCPSite(runner, self.host, self.port).start())
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()
