"""The Prometheus endpoint alone: a published sample scraped over HTTP, read back with prometheus_client's parser."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drainwatch.errors import UsageError
from drainwatch.provision.processes import free_port
from drainwatch.sample.collector import Sample
from drainwatch.sample.metrics import MetricsServer

# application_name is the client's to choose: quotes and backslashes must survive the exposition.
ODD_NAME = 'svc "blue"\\eu'
POOLS = {
    "shop:sa": {"idle": 4, "active": 2, "idle_in_transaction": 1},
    ODD_NAME: {"idle_in_transaction_aborted": 1, "other": 1},
    "": {"idle": 1},
}
SAMPLE = Sample(
    t=1_712_345_678.25,
    total=10,
    active=2,
    idle=5,
    idle_in_transaction=1,
    idle_in_transaction_aborted=1,
    other=1,
    oldest_iit_s=3.5,
    max_connections=100,
)


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family → sorted label pairs → value, as prometheus_client's own parser reads the body."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        found[family.name] = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    return found


def test_a_published_sample_is_scraped_and_parsed() -> None:
    port = free_port()
    with MetricsServer("127.0.0.1", port) as server:
        server.publish(SAMPLE, POOLS)
        metrics = scrape(port)
    assert metrics["drainwatch_up"] == {(): 1.0}
    assert metrics["drainwatch_connections_total"] == {(): 10.0}
    assert metrics["drainwatch_connections"] == {
        (("state", "active"),): 2.0,
        (("state", "idle"),): 5.0,
        (("state", "idle in transaction"),): 1.0,
        (("state", "idle in transaction aborted"),): 1.0,
        (("state", "other"),): 1.0,
    }
    assert metrics["db_client_connection_count"] == {
        (("pool_name", "shop:sa"), ("state", "idle")): 4.0,
        (("pool_name", "shop:sa"), ("state", "used")): 3.0,
        (("pool_name", ODD_NAME), ("state", "idle")): 0.0,
        (("pool_name", ODD_NAME), ("state", "used")): 2.0,
        (("pool_name", "unnamed"), ("state", "idle")): 1.0,
        (("pool_name", "unnamed"), ("state", "used")): 0.0,
    }
    assert metrics["drainwatch_oldest_idle_in_transaction_seconds"] == {(): 3.5}
    assert metrics["drainwatch_max_connections"] == {(): 100.0}
    assert metrics["drainwatch_sample_timestamp_seconds"] == {(): SAMPLE.t}
    assert metrics["drainwatch_collector_gaps"] == {(): 0.0}
    assert "process_cpu_seconds_total" not in metrics and "python_info" not in metrics  # a private registry


def test_a_gap_shows_no_counts_and_is_counted() -> None:
    port = free_port()
    with MetricsServer("127.0.0.1", port) as server:
        before = scrape(port)
        server.publish(SAMPLE, POOLS)
        server.publish(Sample(t=SAMPLE.t + 1, gap=1), {})
        metrics = scrape(port)
    assert before["drainwatch_up"] == {(): 0.0} and "drainwatch_sample_timestamp_seconds" not in before
    assert metrics["drainwatch_up"] == {(): 0.0}
    assert metrics["drainwatch_collector_gaps"] == {(): 1.0}
    assert metrics["drainwatch_sample_timestamp_seconds"] == {(): SAMPLE.t + 1}
    assert "drainwatch_connections" not in metrics and "db_client_connection_count" not in metrics


def test_close_frees_the_port() -> None:
    port = free_port()
    server = MetricsServer("127.0.0.1", port)
    with server:
        assert "drainwatch_up" in scrape(port)
    server.close()  # a second close is harmless
    with pytest.raises(urllib.error.URLError):
        scrape(port)
    with socket.socket() as sock:
        # as a server binds: the scrape's closed connection may sit in TIME_WAIT, a listener may not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_a_taken_port_is_one_usage_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError) as caught, MetricsServer("127.0.0.1", port):
            pytest.fail("served on a port that was taken")
    line = f"{caught.value} — hint: {caught.value.hint}"
    assert line == (
        f"cannot serve metrics on 127.0.0.1:{port} (Address already in use) — hint: choose a free port with --metrics-port"
    )
