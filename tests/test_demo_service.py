"""What the demo service claims, shown against a real PostgreSQL and a real uvicorn.

Each leaky route leaks under the client behaviour named in its docstring; the fixed
variant's same route, driven the same way, leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from drainwatch.instrument import POOL_VIEW_PATH
from drainwatch.provision.postgres import Database
from tests.conftest import connections, demo_service, fresh_database

Variant = tuple[str, str, str]  # (variant, url, dsn)


@pytest.fixture(scope="module", params=["leaky", "fixed"])
def demo(request: pytest.FixtureRequest, pg: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Variant]:
    variant = request.param
    dsn = fresh_database(pg, f"demo_{variant}")
    log = tmp_path_factory.mktemp(variant) / "target.log"
    with demo_service(dsn, variant, log) as url:
        yield variant, url, dsn


def left_by(dsn: str, variant: str, route: str) -> list[dict[str, str]]:
    """Connections not given back that carry ``route``'s tag (held idle or in a transaction)."""
    rows = connections(dsn, f"drainwatch-demo-{variant}:%")
    return [r for r in rows if f"route={route} " in r["query"] and r["state"] != "active"]


def hang_up_mid_stream(url: str, path: str) -> None:
    with httpx.Client(base_url=url, timeout=5) as client, client.stream("POST", path) as resp:
        assert resp.status_code == 200
        next(resp.iter_bytes())  # the reply has started streaming; now the client goes away


def hang_up_on_slow(url: str) -> dict[str, int]:
    """Call the plain GET /slow, hang up after 100 ms, and return how its handler ended:
    ``{"completed": n, "cancelled": m}`` counted by the service while the client was gone."""
    before = httpx.get(url + "/stats").json()["handlers"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url + "/slow?ms=600", timeout=0.1)
    time.sleep(1.0)
    after = httpx.get(url + "/stats").json()["handlers"]
    return {end: after.get(f"slow:{end}", 0) - before.get(f"slow:{end}", 0) for end in ("completed", "cancelled")}


def settle() -> None:
    time.sleep(1.0)


def test_handler_error_leaves_session_idle_in_transaction(demo: Variant) -> None:
    """POST /orders?fail=1: the handler raises mid-transaction (failure modes 1 and 5)."""
    variant, url, dsn = demo
    for _ in range(3):
        assert httpx.post(url + "/orders?fail=1", timeout=5).status_code == 502
    settle()
    left = left_by(dsn, variant, "orders")
    if variant == "leaky":
        assert left and all(r["state"] == "idle in transaction" for r in left)
    else:
        assert left == []


def test_client_disconnect_cancels_stream_and_cleanup(demo: Variant) -> None:
    """POST /chat, client hangs up mid-stream: the await in finally is cancelled (failure mode 2)."""
    variant, url, dsn = demo
    before = httpx.get(url + "/stats").json()["handlers"].get("chat:cancelled", 0)
    hang_up_mid_stream(url, "/chat")
    settle()
    handlers = httpx.get(url + "/stats").json()["handlers"]
    assert handlers.get("chat:cancelled", 0) == before + 1  # the disconnect really cancelled it
    pool = httpx.get(url + POOL_VIEW_PATH).json()["pools"]["asyncpg"]
    left = left_by(dsn, variant, "chat")
    if variant == "leaky":
        assert len(left) >= 1 and left[0]["state"] == "idle"
        assert pool["checked_out"] >= 1  # the pool agrees: it never got the connection back
    else:
        assert left == [] and pool["checked_out"] == 0


def test_server_deadline_with_swallowed_cancellation(demo: Variant) -> None:
    """GET /report with a 100 ms deadline: CancelledError swallowed skips the release (mode 3)."""
    variant, url, dsn = demo
    resp = httpx.get(url + "/report?deadline_ms=100&work_ms=1000", timeout=5)
    settle()
    left = left_by(dsn, variant, "report")
    if variant == "leaky":
        assert resp.status_code == 200 and resp.json() == {"partial": True}
        assert len(left) >= 1
    else:
        assert resp.status_code == 504
        assert left == []


def test_yield_dependency_without_finally(demo: Variant) -> None:
    """GET /items?fail=1: the endpoint raises after the dependency's yield (failure mode 4)."""
    variant, url, dsn = demo
    assert httpx.get(url + "/items", timeout=5).status_code == 200
    assert httpx.get(url + "/items?fail=1", timeout=5).status_code == 502
    settle()
    left = left_by(dsn, variant, "items")
    if variant == "leaky":
        assert [r["state"] for r in left] == ["idle in transaction"]
    else:
        assert left == []


def test_plain_endpoint_is_not_cancelled_by_a_disconnect(demo: Variant) -> None:
    """Why the demo streams: a plain endpoint runs to completion after the client hangs up."""
    _, url, _ = demo
    assert hang_up_on_slow(url) == {"completed": 1, "cancelled": 0}


def test_leak_one_leaks_exactly_one(demo: Variant) -> None:
    """POST /debug/leak-one (both variants): exactly one held connection, seen by both views."""
    variant, url, dsn = demo
    before = httpx.get(url + POOL_VIEW_PATH).json()["pools"]["asyncpg"]["checked_out"]
    assert httpx.post(url + "/debug/leak-one", timeout=5).status_code == 200
    settle()
    assert len(left_by(dsn, variant, "leak-one")) == 1
    assert httpx.get(url + POOL_VIEW_PATH).json()["pools"]["asyncpg"]["checked_out"] == before + 1


def test_raw_release_not_in_finally(demo: Variant) -> None:
    """POST /refund?fail=1: the handler raises before the raw pool's release (failure mode 1)."""
    variant, url, dsn = demo
    assert httpx.post(url + "/refund?fail=1", timeout=5).status_code == 502
    settle()
    left = left_by(dsn, variant, "refund")
    if variant == "leaky":
        assert [r["state"] for r in left] == ["idle"]  # held: idle with the app's SQL last
    else:
        assert left == []


def test_double_release_in_a_retry_loop(demo: Variant) -> None:
    """POST /retry: the leaky retry path releases twice (failure mode 6). With asyncpg the second
    release is a no-op, so it shows as failed requests, not as a leak."""
    variant, url, dsn = demo
    before = httpx.get(url + POOL_VIEW_PATH).json()["pools"]["asyncpg"]["checked_out"]
    resp = httpx.post(url + "/retry?hiccups=1", timeout=5)
    settle()
    after = httpx.get(url + POOL_VIEW_PATH).json()["pools"]["asyncpg"]["checked_out"]
    assert after == before and left_by(dsn, variant, "retry") == []
    if variant == "leaky":
        assert resp.status_code == 500  # the next attempt used a connection it had given back
    else:
        assert resp.status_code == 200 and resp.json()["attempts"] == 2


@pytest.fixture(scope="module")
def cancelling(pg: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Variant]:
    """The fixed variant behind the cancel-on-disconnect middleware."""
    dsn = fresh_database(pg, "demo_cancelling")
    log = tmp_path_factory.mktemp("cancelling") / "target.log"
    with demo_service(dsn, "fixed", log, "--cancel-on-disconnect") as url:
        yield "fixed", url, dsn


def test_middleware_cancels_a_plain_endpoint_on_hang_up(cancelling: Variant) -> None:
    _, url, _ = cancelling
    assert hang_up_on_slow(url) == {"completed": 0, "cancelled": 1}


def test_middleware_spares_completed_responses(cancelling: Variant) -> None:
    """Clients that hang up after their response (the normal end) cancel nothing and leak nothing."""
    variant, url, dsn = cancelling
    cancelled_before = httpx.get(url + "/stats").json()["handlers"].get("slow:cancelled", 0)
    for _ in range(20):
        with httpx.Client(base_url=url) as client:  # a new connection each time, closed after the response
            assert client.get("/items").status_code == 200
            assert client.get("/slow?ms=10").status_code == 200
    settle()
    assert left_by(dsn, variant, "items") == []
    assert httpx.get(url + POOL_VIEW_PATH).json()["checked_out"] == 0
    assert httpx.get(url + "/stats").json()["handlers"].get("slow:cancelled", 0) == cancelled_before
