"""The collector's optional Prometheus endpoint (``--metrics-port``): its metric names and its server.

It serves the latest sample only, so a Grafana user can watch a long soak live; the CSV
stays the record. The names are drainwatch's own (``drainwatch_*``, by PostgreSQL state) and
OpenTelemetry's database-client ones (``db_client_connection_count``, idle or used, per
application_name as the pool's name). prometheus_client does the exposition and serves a
private registry from its threaded HTTP server, so the collector's sampling loop stays the
plain blocking code with a monotonic schedule that it is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from drainwatch.errors import UsageError
from drainwatch.sample.collector import Pools, Sample

STATE_COLUMNS = ("active", "idle", "idle_in_transaction", "idle_in_transaction_aborted", "other")
UNNAMED_POOL = "unnamed"  # OpenTelemetry's pool name must not be empty; application_name may be


@dataclass(frozen=True)
class Snapshot:
    """What one scrape shows: replaced whole on publish, so a scrape never mixes two readings."""

    sample: Sample | None = None
    pools: Pools = field(default_factory=dict)
    gaps: int = 0


def state_label(column: str) -> str:
    """The ``state`` label of a Sample column: ``idle_in_transaction`` → ``idle in transaction``."""
    return column.replace("_", " ")


def otel_counts(pools: Pools) -> dict[tuple[str, str], int]:
    """``(pool_name, "idle" | "used")`` → backends: used is every PostgreSQL state but idle."""
    counts: dict[tuple[str, str], int] = {}
    for application_name, states in pools.items():
        name = application_name or UNNAMED_POOL
        idle = states.get("idle", 0)
        used = sum(states.values()) - idle
        # Two application_names can differ only by being empty and "unnamed": add, never overwrite.
        counts[name, "idle"] = counts.get((name, "idle"), 0) + idle
        counts[name, "used"] = counts.get((name, "used"), 0) + used
    return counts


def _connection_families(sample: Sample, pools: Pools) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "drainwatch_connections", "The target's client backends in pg_stat_activity, by state.", labels=["state"]
    )
    for column in STATE_COLUMNS:
        by_state.add_metric([state_label(column)], getattr(sample, column))
    yield by_state
    yield GaugeMetricFamily("drainwatch_connections_total", "All of the target's client backends.", value=sample.total)
    otel = GaugeMetricFamily(
        "db_client_connection_count",
        "OpenTelemetry db.client.connection.count: the target's backends per application_name (pool_name), "
        "idle or used (any other PostgreSQL state), as PostgreSQL sees them.",
        labels=["pool_name", "state"],
    )
    for (pool_name, state), n in sorted(otel_counts(pools).items()):
        otel.add_metric([pool_name, state], n)
    yield otel
    yield GaugeMetricFamily(
        "drainwatch_oldest_idle_in_transaction_seconds",
        "Age of the oldest idle-in-transaction state.",
        value=sample.oldest_iit_s,
    )
    yield GaugeMetricFamily("drainwatch_max_connections", "The server's max_connections.", value=sample.max_connections)


def _collector_families(sample: Sample | None, gaps: int) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "drainwatch_collector_gaps", "Samples missed because PostgreSQL could not be reached.", value=gaps
    )
    reached = sample is not None and not sample.gap
    yield GaugeMetricFamily("drainwatch_up", "1 when the latest sample reached PostgreSQL.", value=int(reached))
    if sample is not None:
        yield GaugeMetricFamily(
            "drainwatch_sample_timestamp_seconds", "Unix time of the latest sample.", value=sample.t
        )


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot (pure). A gap shows no connection counts: none were read."""
    sample = snapshot.sample
    if sample is not None and not sample.gap:
        yield from _connection_families(sample, snapshot.pools)
    yield from _collector_families(sample, snapshot.gaps)


class SnapshotCollector(Collector):
    """A prometheus_client collector that yields the latest published snapshot."""

    def __init__(self) -> None:
        self.latest = Snapshot()

    def publish(self, sample: Sample, pools: Pools | None = None) -> None:
        # One writer (the sampling loop): the read-add-replace of the gap count cannot race.
        self.latest = Snapshot(sample, pools or {}, self.latest.gaps + sample.gap)

    def collect(self) -> Iterator[Metric]:
        return families(self.latest)


class MetricsServer:
    """``GET /metrics`` on ``host:port`` from entering until ``close()``; ``publish()`` is thread-safe."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._collector = SnapshotCollector()
        self.registry = CollectorRegistry(auto_describe=False)  # never the global one: no process metrics
        self.registry.register(self._collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def publish(self, sample: Sample, pools: Pools | None = None) -> None:
        self._collector.publish(sample, pools)

    def __enter__(self) -> MetricsServer:
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:  # the port was taken after the check, or the host is not ours
            raise UsageError(
                f"cannot serve metrics on {self.host}:{self.port} ({exc.strerror or exc})",
                hint="choose a free port with --metrics-port",
            ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and free the port; a second call does nothing."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(5)
