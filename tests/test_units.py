"""The pure parts, without a database: durations, DSN redaction, sample folding, forensics, verdict."""

from __future__ import annotations

import pytest

from drainwatch.errors import UsageError
from drainwatch.judge.diagnosis import diagnose
from drainwatch.judge.forensics import classify, is_reset_statement, learn, parse_tag, resetting_apps
from drainwatch.judge.probe import ProbeResult, answer
from drainwatch.judge.verdict import (
    ERROR,
    LEAK,
    PASS,
    SATURATED,
    Evidence,
    judge,
    recovery_sentence,
    with_service_warnings,
)
from drainwatch.plan import parse_mix, redact_dsn
from drainwatch.sample.collector import Sample, to_sample
from drainwatch.units import parse_duration

ASYNCPG_RESET = "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("0.25", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "10 parsecs", "", "-5s", "0"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_parse_mix() -> None:
    assert parse_mix("steady=4, error=1") == {"steady": 4, "error": 1}
    with pytest.raises(UsageError, match="unknown chaos kind 'chaos'"):
        parse_mix("chaos=1")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:s3cr3t@db:5432/app",
        "postgresql://app:s3cr3t@db/app?sslmode=require",
        "host=db user=app password=s3cr3t dbname=app",
        "host=db password='s3 cr3t' dbname=app",
    ],
)
def test_redact_dsn_hides_password(dsn: str) -> None:
    assert "s3" not in redact_dsn(dsn)
    assert "***" in redact_dsn(dsn)


def test_to_sample_folds_rows_and_skips_others() -> None:
    rows = [
        (True, "idle", 5, 12.5),
        (True, "idle in transaction", 2, 30.0),
        (True, "idle in transaction (aborted)", 1, 40.0),
        (True, "active", 3, 0.2),
        (False, "idle", 7, 100.0),  # another application's backends
    ]
    sample = to_sample(1000.0, rows, max_connections=100, late_ms=1.234)
    assert (sample.total, sample.idle, sample.idle_in_transaction, sample.idle_in_transaction_aborted) == (11, 5, 2, 1)
    assert sample.active == 3 and sample.all_client_backends == 18
    assert sample.oldest_iit_s == 40.0 and sample.oldest_idle_s == 12.5
    assert sample.max_connections == 100 and sample.late_ms == 1.23


def test_to_sample_of_nothing_is_zero() -> None:
    assert to_sample(1.0, [], 100) == Sample(t=1.0, max_connections=100)


def test_reset_statements_are_recognised() -> None:
    assert is_reset_statement(ASYNCPG_RESET)
    assert is_reset_statement("ROLLBACK;") and is_reset_statement("COMMIT") and is_reset_statement("")
    assert not is_reset_statement("SELECT count(*) FROM orders")
    assert not is_reset_statement("ROLLBACKS_TABLE_SCAN")


def test_parse_tag() -> None:
    query = "/* drainwatch route=chat scenario=disconnect rid=ab12 */ SELECT 1"
    assert parse_tag(query) == {"route": "chat", "scenario": "disconnect", "rid": "ab12"}
    assert parse_tag("SELECT 1") == {}


def _conn(app: str, state: str, query: str, age: float = 10.0) -> dict[str, object]:
    return {"application_name": app, "state": state, "query": query, "state_age_s": age}


def test_classify_uses_what_baseline_taught() -> None:
    baseline = [_conn("app:raw", "idle", ASYNCPG_RESET)]
    final = [
        _conn("app:raw", "idle", "/* drainwatch route=chat scenario=disconnect rid=1 */ SELECT 1 FROM t"),
        _conn("app:sa", "idle", "SELECT * FROM t"),  # nothing known about this pool's resets
        _conn("app:sa", "idle in transaction", "INSERT INTO t VALUES (1)"),
    ]
    kinds = [row["kind"] for row in classify(final, resetting_apps(baseline))]
    assert kinds == ["held", "unsure", "in_transaction"]
    assert classify(final, resetting_apps(baseline))[0]["scenario"] == "disconnect"


def _samples(total_by_second: list[int], start: float = 0.0) -> list[dict[str, float]]:
    return [
        {
            "t": start + i,
            "total": n,
            "active": 0,
            "idle": n,
            "idle_in_transaction": 0,
            "idle_in_transaction_aborted": 0,
            "gap": 0,
        }
        for i, n in enumerate(total_by_second)
    ]


PHASES = {"baseline": (0.0, 4.0), "load": (5.0, 9.0), "settle": (10.0, 14.0)}


def test_warm_pool_that_drains_passes() -> None:
    samples = _samples([5] * 5 + [20] * 5 + [20, 12, 5, 5, 5])
    verdict = judge(
        Evidence(samples, PHASES, [_conn("a", "idle", "ROLLBACK", 1) | {"kind": "pooled"}] * 5, ProbeResult(3, 3))
    )
    assert verdict.outcome == PASS and verdict.recovery_s == 3.0 and verdict.exit_code == 0


def test_grown_pool_of_reset_connections_is_not_a_leak() -> None:
    samples = _samples([5] * 5 + [20] * 10)
    lingering = [_conn("a", "idle", "ROLLBACK") | {"kind": "pooled"}] * 20
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == PASS
    assert "warm pool" in verdict.checks[0].detail


def test_pool_filled_at_baseline_still_leaks_by_forensics_and_probe() -> None:
    samples = _samples([30] * 15)  # baseline is already the maximum: counts show nothing
    lingering = [_conn("a", "idle", "SELECT 1 FROM t") | {"kind": "held", "scenario": "disconnect"}] * 30
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(1, 0, True, "no answer within 5s")))
    assert verdict.outcome == LEAK and verdict.exit_code == 1
    assert verdict.leaked == 30 and verdict.scenarios == {"disconnect": 30}
    assert any("pool is exhausted" in reason for reason in verdict.reasons)


def test_gc_closed_leak_with_nothing_visible_is_decided_by_the_probe() -> None:
    samples = _samples([5] * 15)
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(1, 0, True, "no answer within 5s")))
    assert verdict.outcome == LEAK
    assert verdict.evidence == ["probe"]


def test_pool_view_reconciles_what_postgres_cannot_see() -> None:
    samples = _samples([5] * 15)
    view = {"checked_out": 8, "idle": 0, "limit": 8}
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(1, 0, True, "no answer within 5s"), pool_view=view))
    assert verdict.outcome == LEAK and verdict.evidence == ["pool_view", "probe"]
    assert "count 8 checked out, PostgreSQL shows 0 of them" in verdict.reasons[0]
    assert verdict.leaked == 8 and verdict.leaked_by_kind["invisible"] == 8


def test_unsure_idle_connections_do_not_excuse_an_excess() -> None:
    samples = _samples([5] * 5 + [9] * 10)
    lingering = [_conn("a", "idle", "SELECT * FROM t") | {"kind": "unsure"}] * 9
    assert judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3))).outcome == LEAK
    # ...but the pool's own view can: it counts them idle in the pool.
    view = {"checked_out": 0, "idle": 9, "limit": 10}
    assert judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3), pool_view=view)).outcome == PASS


def _used_once(opened_at: float, now: float = 14.0, life: float = 0.05) -> dict:
    """An idle connection opened at ``opened_at`` that went quiet ``life`` later and stayed so."""
    idle_since = opened_at + life
    return _conn("dj", "idle", 'SELECT "notes".* FROM "notes"') | {
        "kind": "unsure",
        "backend_age_s": now - opened_at,
        "state_age_s": now - idle_since,
        "state_change_t": idle_since,
    }


def test_connections_used_once_during_the_load_are_a_leak_whatever_the_baseline() -> None:
    # Django under ASGI: the baseline (20) already holds warm-up's leaked connections, and the
    # garbage collector pulled the final count under it; what is left served one request each.
    samples = _samples([20] * 5 + [30] * 5 + [12] * 5)
    lingering = [_used_once(2.0 + i / 10) for i in range(4)] + [_used_once(5.0 + i / 2) for i in range(6)]
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == LEAK and verdict.evidence == ["single_use"]
    assert verdict.leaked == 10 and verdict.leaked_by_kind["single_use"] == 10


def test_a_pool_grown_in_a_burst_at_warm_up_and_never_reused_is_not_single_use() -> None:
    # A LIFO pool keeps its newest connections at the bottom: used once at warm-up, idle since.
    lingering = [_used_once(1.0 + i / 100) for i in range(10)] + [_used_once(8.7 + i / 100) for i in range(6)]
    verdict = judge(Evidence(_samples([10] * 15), PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == PASS and verdict.leaked_by_kind["single_use"] == 0


def test_pooled_connections_reused_through_the_load_are_not_single_use() -> None:
    lingering = [_used_once(1.0 + i / 10, life=7.5) for i in range(10)]  # opened at warm-up, busy until load end
    verdict = judge(Evidence(_samples([10] * 15), PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == PASS and verdict.leaked_by_kind["single_use"] == 0


def _committed_once(opened_at: float) -> dict:
    """Django with ATOMIC_REQUESTS: a connection that served one request, its last statement COMMIT."""
    return _used_once(opened_at) | {"query": "COMMIT", "kind": "pooled"}


def test_connections_ending_in_commit_never_reused_are_a_leak() -> None:
    # The last statement looks like a pool's reset; reuse says otherwise: each served one request.
    samples = _samples([0] * 5 + [40] * 5 + [12] * 5)
    lingering = [_committed_once(5.0 + i / 4) for i in range(12)]
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3), load={"requests": 500, "users": 10}))
    assert verdict.outcome == LEAK and "single_use" in verdict.evidence
    assert verdict.leaked == 12 and verdict.pooled_idle == 0
    assert "a warm pool" not in verdict.checks[0].detail


def test_a_lifo_pool_grown_in_one_burst_during_the_load_is_not_a_leak() -> None:
    # 20 users at once: the pool opens 20, each used once, and keeps them (no more than the load needs at once).
    lingering = [_committed_once(5.0 + i / 1000) for i in range(20)]
    verdict = judge(
        Evidence(
            _samples([0] * 5 + [20] * 10), PHASES, lingering, ProbeResult(3, 3), load={"requests": 900, "users": 20}
        )
    )
    assert verdict.outcome == PASS and verdict.leaked_by_kind["single_use"] == 0 and verdict.pooled_idle == 20


def test_connections_opened_per_request_decide_with_few_survivors() -> None:
    # The garbage collector closed most: 6 survivors, opened in one burst, fewer than 2 per user; but the
    # collector saw 300 connections opened for 1,000 requests. The same survivors under a pool that opened
    # only its 20 are not a leak.
    lingering = [_committed_once(5.0 + i / 1000) for i in range(6)]
    churn = [s | {"opened": 60} for s in _samples([0] * 5 + [6] * 10)]
    verdict = judge(Evidence(churn, PHASES, lingering, ProbeResult(3, 3), load={"requests": 1000, "users": 20}))
    assert verdict.outcome == LEAK and verdict.leaked_by_kind["single_use"] == 6
    assert verdict.reuse == {"opened": 240, "requests": 1000, "closed": 240, "users": 20, "never_reused": 6}
    assert "240 connection(s) opened for 1000 request(s) during the load; 6 still open served one request" in " ".join(
        verdict.reasons
    )
    calm = [s | {"opened": 5} for s in _samples([0] * 5 + [6] * 10)]
    assert (
        judge(Evidence(calm, PHASES, lingering, ProbeResult(3, 3), load={"requests": 1000, "users": 20})).outcome
        == PASS
    )


def test_a_count_back_under_a_baseline_the_leak_filled_is_no_pass() -> None:
    # Warm-up leaked 30 into the baseline; the final 25 is under it, and 25 over the 0 before any traffic.
    samples = _samples([0, 30, 30, 30, 30, 30, 30, 40, 35, 30, 25, 25, 25, 25, 25])
    lingering = [_committed_once(1.0 + i / 10) for i in range(10)] + [_committed_once(6.0 + i / 4) for i in range(15)]
    verdict = judge(Evidence(samples, WITH_WARMUP, lingering, ProbeResult(3, 3), load={"requests": 600, "users": 10}))
    assert verdict.outcome == LEAK and {"drain", "single_use"} <= set(verdict.evidence)
    assert verdict.checks[0].detail.startswith("25 connections after settle, 25 over the 0 before any traffic")


def test_the_service_logging_dropped_connections_is_a_leak() -> None:
    passed = judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3)))
    verdict = with_service_warnings(passed, {"connection_dropped": 3, "pool_exhausted": 1})
    assert verdict.outcome == LEAK and verdict.evidence == ["leak_warnings"]
    assert verdict.reasons[0] == (
        "the service dropped 3 connection(s) without giving them back, closed later by the garbage collector "
        "(its log says 3)"
    )
    clean = with_service_warnings(
        judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3))), {"pool_exhausted": 2}
    )
    assert clean.outcome == PASS and [c.passed for c in clean.checks if c.name == "leak_warnings"] == [True]


def _steady(requests: int, failed: int, not_served: int = 0) -> dict:
    error = "GET /items: no answer within 5 s"
    return {
        "steady": {"requests": requests, "failed": failed, "not_served": not_served, "no_chaos": 0, "top_error": error}
    }


def test_a_service_that_stopped_serving_its_steady_traffic_is_saturated_not_pass() -> None:
    zombie_tail = [s | {"active": 3} for s in _samples([6] * 12)] + _samples([6] * 3, start=12.0)
    view = {"checked_out": 0, "idle": 6, "limit": 6, "pools": {"db": {"waited": 40, "limit": 6}}}
    verdict = judge(Evidence(zombie_tail, PHASES, [], ProbeResult(3, 3), load_kinds=_steady(200, 170), pool_view=view))
    assert verdict.outcome == SATURATED and verdict.exit_code == 4 and verdict.evidence == ["saturation"]
    assert verdict.reasons[0].startswith(
        "the service stopped serving under the load: 170 of 200 steady requests (85%) failed while it ran "
        "(top error: GET /items: no answer within 5 s); 40 request(s) waited for a connection of db (limit 6); "
        "work for clients that had hung up kept 3 backend(s) busy"
    )
    assert verdict.reasons[0].endswith("every connection came back after the traffic: saturation, not a leak")


def test_saturation_has_a_threshold_and_leak_wins() -> None:
    quiet = _samples([5] * 15)
    for failed, outcome in ((2, PASS), (3, PASS), (4, SATURATED)):  # 1 % of 300, and at least 3
        assert judge(Evidence(quiet, PHASES, [], ProbeResult(3, 3), load_kinds=_steady(300, failed))).outcome == outcome
    # 404s the service meant are not failures to serve
    assert judge(Evidence(quiet, PHASES, [], ProbeResult(3, 3), load_kinds=_steady(300, 90, 90))).outcome == PASS
    held = [_conn("a", "idle", "SELECT 1 FROM t") | {"kind": "held"}] * 5
    verdict = judge(
        Evidence(_samples([0] * 5 + [5] * 10), PHASES, held, ProbeResult(3, 3), load_kinds=_steady(300, 200))
    )
    assert verdict.outcome == LEAK and "saturation" not in verdict.evidence
    assert [c.passed for c in verdict.checks if c.name == "saturation"] == [False]


# t=0 is the count before any traffic
WITH_WARMUP = {"warmup": (1.0, 2.5), "baseline": (3.0, 5.0), "load": (6.0, 9.0), "settle": (10.0, 14.0)}


def test_a_baseline_that_moves_with_no_traffic_is_reported() -> None:
    samples = _samples([2, 30, 30, 31, 29, 26, 30, 30, 30, 30, 26, 26, 26, 26, 26])  # quiet: 31 down to 26
    lingering = [_conn("a", "idle", "ROLLBACK") | {"kind": "pooled"}] * 26
    verdict = judge(Evidence(samples, WITH_WARMUP, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == PASS  # every connection left is reset in its pool: the drop is explained
    assert verdict.baseline_drift == {"low": 26.0, "high": 31.0, "moved": True, "before_warmup": 2.0}
    assert any(reason.startswith("the baseline moved from 26 to 31 connections") for reason in verdict.reasons)


def test_a_final_count_under_a_moving_baseline_is_no_pass_on_its_own() -> None:
    # A leak that fills the baseline and is closed by a garbage collector at random: the final
    # count (12) is under the baseline (30) but 10 over the 2 before warm-up, none of them pooled.
    samples = _samples([2, 20, 30, 35, 30, 28, 30, 30, 30, 30, 12, 12, 12, 12, 12])
    lingering = [_conn("dj", "idle", "SELECT * FROM notes") | {"kind": "unsure"}] * 12
    verdict = judge(Evidence(samples, WITH_WARMUP, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == ERROR and verdict.evidence == ["baseline_moved"]
    assert "10 over the 2 before warm-up" in verdict.reasons[0]
    steady = _samples([2] + [30] * 9 + [12] * 5)  # the same end under a baseline that stood still
    assert judge(Evidence(steady, WITH_WARMUP, lingering, ProbeResult(3, 3))).outcome == PASS


def _pools(**counts: int) -> dict[str, int]:
    return {"cl_active": 4, "cl_waiting": 0, "sv_active": 0, "sv_idle": 4, "sv_used": 0, "maxwait": 0, **counts}


def test_clients_waiting_at_pgbouncer_after_traffic_stopped_are_a_stuck_pool() -> None:
    samples = _samples([4] * 15)
    stuck = {"mode": "session", "pool_size": 4, "final": _pools(cl_waiting=6, sv_active=4, sv_idle=0)}
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), pooler=stuck))
    assert verdict.outcome == LEAK and verdict.evidence == ["pooler"]
    assert verdict.reasons[0].startswith("6 client(s) still waiting at PgBouncer after traffic stopped")
    linked = {"mode": "transaction", "pool_size": 4, "final": _pools(sv_active=2)}  # transactions nobody ended
    assert judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), pooler=linked)).evidence == ["pooler"]
    session = {"mode": "session", "pool_size": 4, "final": _pools(sv_active=4)}  # a session holds its server
    assert judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), pooler=session)).outcome == PASS


def test_a_pool_that_ran_out_under_load_with_nothing_held_is_a_small_pool_not_a_leak() -> None:
    from drainwatch.judge.verdict import with_service_warnings

    verdict = with_service_warnings(
        judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3))), {"pool_exhausted": 7}
    )
    assert verdict.outcome == PASS and verdict.service_warnings == {"pool_exhausted": 7}
    assert any(
        reason.startswith("pool too small for this load: the service's pool ran out 7 time(s)")
        for reason in verdict.reasons
    )
    leak = judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(1, 0, True, "no answer within 5s")))
    assert not any("pool too small" in r for r in with_service_warnings(leak, {"pool_exhausted": 7}).reasons)


def test_waits_a_user_feels_make_a_pool_too_small_short_ones_a_busy_pool() -> None:
    from drainwatch.judge.verdict import small_pool_note

    def view(**pool: object) -> dict:
        return {"pools": {"raw": {"kind": "asyncpg", "limit": 10, **pool}, "db": {"kind": "sqlalchemy", "limit": 30}}}

    assert small_pool_note(view(waited=916, wait_max_s=0.17)) is None  # queued, briefly: a busy pool
    assert small_pool_note(view(waited=0, wait_max_s=0.0)) is None
    assert small_pool_note(view(waited=394, wait_max_s=0.9)) == (
        "pool too small for this load: 394 request(s) waited for a connection of raw (limit 10), up to 0.9s; "
        "nothing was held after the load: a small pool is not a leak (give it more connections, or fewer --users)"
    )
    # psycopg_pool counts the total wait only
    assert "300 request(s) waited for a connection of raw (limit 10), 0.5s on average" in str(
        small_pool_note(view(waited=300, wait_total_s=150.0))
    )
    assert small_pool_note(view(waited=300, wait_total_s=3.0)) is None
    samples = _samples([5] * 15)
    quick = judge(
        Evidence(
            samples,
            PHASES,
            [],
            ProbeResult(3, 3),
            pool_view={**view(waited=5, wait_max_s=2.0), "checked_out": 0, "idle": 5, "limit": 40},
        )
    )
    assert quick.outcome == PASS and any(
        r.startswith("pool too small for this load: 5 request(s)") for r in quick.reasons
    )


def test_zombie_work_after_traffic_stopped() -> None:
    samples = _samples([5] * 15)
    for sample in samples[10:13]:
        sample["active"] = 3
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(3, 3)))
    assert verdict.zombie == {"peak_active": 3, "lasted_s": 3.0}


def test_a_probe_refused_is_error_not_leak() -> None:
    samples = _samples([5] * 5 + [20] * 10)
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(1, 0, False, "connection refused")))
    assert verdict.outcome == ERROR and verdict.exit_code == 2


def test_idle_in_transaction_leak() -> None:
    samples = _samples([5] * 5 + [7] * 10)
    lingering = [
        _conn("a", "idle in transaction", "INSERT", 12.0) | {"kind": "in_transaction", "scenario": "error"}
    ] * 2
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == LEAK
    assert verdict.idle_in_transaction == {"count": 2, "oldest_s": 12.0}


def test_a_health_checks_select_one_is_application_sql() -> None:
    # A service whose health route runs SELECT 1: its held connections are still held (issue: At the limit).
    assert not is_reset_statement("SELECT 1")
    assert not is_reset_statement("SELECT 1 FROM orders")
    rows = [_conn("svc", "idle", "ROLLBACK", 30.0), _conn("svc", "idle", "SELECT 1", 30.0)]
    assert [row["kind"] for row in classify(rows)] == ["pooled", "held"]


def test_an_idle_connection_that_just_changed_state_is_busy_not_held() -> None:
    # Between two queries of a request still running (N+1), a connection is idle with app SQL.
    rows = [
        _conn("svc", "idle", "ROLLBACK", 30.0),
        _conn("svc", "idle", "SELECT * FROM items WHERE id = 3", 0.4),
        _conn("svc", "idle", "SELECT * FROM items WHERE id = 9", 30.0),
    ]
    assert [row["kind"] for row in classify(rows, recent=3.0)] == ["pooled", "active", "held"]


def test_pooled_connections_from_baseline_do_not_excuse_new_ones() -> None:
    samples = _samples([10] * 5 + [15] * 10)
    lingering = [_conn("a", "idle", "ROLLBACK") | {"kind": "pooled"}] * 10
    lingering += [_conn("a", "active", "SELECT pg_sleep(60)") | {"kind": "active"}] * 5
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == LEAK and verdict.evidence == ["drain"]
    assert verdict.leaked == 5


@pytest.mark.parametrize(("seconds", "text"), [(4.25, "4.2s"), (185, "3m 05s"), (34552, "9h 35m")])
def test_human_seconds(seconds: float, text: str) -> None:
    from drainwatch.units import human_seconds

    assert human_seconds(seconds) == text


def test_compact_sample_reading_gives_the_same_verdict(tmp_path) -> None:
    """A long soak's samples are not all held in memory, and the verdict does not change."""
    import csv as csv_module

    from drainwatch.sample.collector import Sample, read_samples

    path = tmp_path / "samples.csv"
    with path.open("w", newline="") as handle:
        writer = csv_module.DictWriter(handle, fieldnames=Sample.columns())
        writer.writeheader()
        for i in range(2000):
            t = i * 0.25
            total = 1 if t < 1 else 5 if t < 5 else (12 + i % 7 if t < 450 else 8)
            writer.writerow(vars(Sample(t=t, total=total, idle=total, gap=int(i == 1500))))
    phases = {"warmup": (1.0, 2.0), "baseline": (2.0, 4.0), "load": (5.0, 450.0), "settle": (450.0, 500.0)}
    full, compact = read_samples(path), read_samples(path, phases)
    assert len(compact) < len(full) / 5
    args = ([], ProbeResult(3, 3))
    assert judge(Evidence(full, phases, *args)).to_dict() == judge(Evidence(compact, phases, *args)).to_dict()
    assert judge(Evidence(compact, phases, *args)).baseline_drift["before_warmup"] == 1.0  # the last reading before it


def test_diagnosis_names_cause_and_fix_per_pattern() -> None:
    from drainwatch.judge.diagnosis import diagnose

    samples = _samples([5] * 5 + [9] * 10)
    lingering = [_conn("a", "idle in transaction", "INSERT", 12.0) | {"kind": "in_transaction", "route": "orders"}] * 2
    lingering += [_conn("a", "idle", "SELECT 1 FROM t") | {"kind": "held", "route": "chat"}] * 2
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(1, 0, True, "no answer within 5s")))
    patterns = [item["pattern"] for item in diagnose(verdict)]
    assert patterns == ["idle in transaction after traffic stopped", "idle connections still checked out", "guardrails"]
    first = diagnose(verdict)[0]
    assert "left by orders (2)" in first["evidence"] and "finally" in first["fix"]
    assert diagnose(judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3)))) == []


def test_zombie_work_holding_the_pool_is_said_plainly_and_is_not_a_leak() -> None:
    # --settle ran out while abandoned requests still ran: not a leak (nothing is held), not yet a pass.
    samples = _samples([5] * 15)
    for sample in samples[10:]:
        sample["active"] = 5
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(1, 0, True, "no answer within 5s")))
    assert verdict.outcome == ERROR and verdict.evidence == ["still_working"] and verdict.exit_code == 2
    assert "still working for clients that have gone" in verdict.reasons[0] and "--settle" in verdict.reasons[0]
    held = [_conn("a", "idle", "SELECT 1 FROM t") | {"kind": "held"}]
    assert judge(Evidence(samples, PHASES, held, ProbeResult(1, 0, True, "no answer within 5s"))).outcome == LEAK


def test_a_load_that_sent_nothing_is_an_error_not_a_pass() -> None:
    samples = _samples([5] * 15)
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), load={"requests": 0, "exceptions": 40}))
    assert verdict.outcome == ERROR and verdict.evidence == ["no_load"]
    assert "40 exception(s)" in verdict.reasons[0]
    noisy = judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), load={"requests": 900, "exceptions": 3}))
    assert noisy.outcome == PASS and any("raised 3 exception(s)" in r for r in noisy.reasons)


def test_two_pools_under_one_application_name_are_told_apart_by_backend() -> None:
    # One pool resets what it gets back (DISCARD ALL), the other does not: baseline shows both.
    baseline = [
        _conn("svc", "idle", "DISCARD ALL") | {"pid": 1},
        _conn("svc", "idle", "SELECT * FROM orders") | {"pid": 2},
    ]
    resets = learn(baseline)
    assert resets.pids == {1} and resets.mixed == {"svc"}
    after = [
        _conn("svc", "idle", "SELECT * FROM users WHERE id = 7") | {"pid": 1},  # a reset backend now holds app work
        _conn("svc", "idle", "SELECT * FROM orders") | {"pid": 2},  # the non-resetting pool, as at baseline
        _conn("svc", "idle", "SELECT * FROM orders") | {"pid": 3},
    ]  # new: which pool is it in? cannot tell
    assert [row["kind"] for row in classify(after, resets=resets)] == ["held", "unsure", "unsure"]


def test_a_transaction_left_open_since_warm_up_is_a_leak_even_if_it_is_gone_after_settle() -> None:
    samples = _samples([5] * 15)
    at_baseline = [_conn("a", "idle in transaction", "SELECT 1 FROM t", 9.0) | {"kind": "in_transaction"}]
    verdict = judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), at_baseline=at_baseline))
    assert verdict.outcome == LEAK and verdict.evidence == ["baseline_clean"]
    assert verdict.reasons[0].startswith(
        "the leak began during warm-up: 1 connection(s) were already idle in transaction"
    )
    assert judge(Evidence(samples, PHASES, [], ProbeResult(3, 3), at_baseline=[])).outcome == PASS


def test_connections_opened_one_by_one_and_kept_get_the_sync_stack_diagnosis() -> None:
    # Django's CONN_MAX_AGE under ASGI: no pool, no reset, one connection per request, each its own age.
    samples = _samples([0] * 5 + [12] * 10)
    lingering = [
        _conn("", "idle", "SELECT * FROM items", 20.0) | {"kind": "unsure", "backend_age_s": 20.0 + i}
        for i in range(12)
    ]
    verdict = judge(Evidence(samples, PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == LEAK and verdict.per_request
    found = diagnose(verdict)
    assert found[0]["pattern"] == "a connection per request (or thread), never closed"
    assert "CONN_MAX_AGE" in found[0]["cause"] and "async with pool.acquire()" not in found[0]["fix"]


def test_attribution_without_tags_picks_the_kind_running_at_every_leak() -> None:
    from drainwatch.judge.attribution import attribute, normalise, summary

    # Hang-ups 40 times a second (each a millisecond) and steady traffic all along; an error request at each leak.
    requests = [{"scenario": "disconnect", "method": "GET", "name": "/users/", "start": 100 + i / 40, "end": 100.001 + i / 40}
                for i in range(400)]  # fmt: skip
    requests += [{"scenario": "steady", "method": "GET", "name": "/users/", "start": 100 + i / 10, "end": 100.08 + i / 10}
                 for i in range(100)]  # fmt: skip
    leaks = [101.0123, 103.2071, 105.7139, 107.1188]
    requests += [
        {"scenario": "error", "method": "GET", "name": "/users/x", "start": t - 0.004, "end": t + 0.002} for t in leaks
    ]
    rows = [{"query": f"SELECT name FROM users WHERE email = 'u{i}'", "state_change_t": t} for i, t in enumerate(leaks)]
    found = summary(attribute(rows, requests))
    assert found["likely"] == {"error GET /users/x": 4}
    assert found["statements"] == {"SELECT name FROM users WHERE email = ?": 4}
    assert (
        normalise("/* drainwatch route=x */ SELECT 1 FROM t WHERE a = $1 AND b IN (1, 2)")
        == "SELECT ? FROM t WHERE a = ? AND b IN (?, ?)"
    )


def test_warm_up_ends_once_the_pools_stop_growing() -> None:
    from drainwatch.run.warmup import WARMUP_MIN, WARMUP_STEADY, stopped_growing

    filled = [(100.0 + i * 0.25, min(28, 4 * i)) for i in range(20)]  # full (28) at 101.75
    assert not stopped_growing(filled, 100.0 + WARMUP_MIN - 0.1, 100.0)  # never before WARMUP_MIN
    assert stopped_growing(filled, 101.75 + WARMUP_STEADY, 100.0)
    assert not stopped_growing(filled, 101.75 + WARMUP_STEADY - 0.1, 100.0)
    growing = [(100.0 + i * 0.25, i) for i in range(40)]  # a connection per request: a new high every sample
    assert not stopped_growing(growing, 110.0, 100.0)
    assert not stopped_growing([(100.0 + i, 0) for i in range(8)], 110.0, 100.0)  # no connection seen yet
    assert not stopped_growing([], 110.0, 100.0)


def test_a_count_that_fell_under_baseline_on_a_leak_is_not_never_back() -> None:
    # Held connections took the place of pooled ones: 10 left of a baseline of 29.
    held = [_conn("a", "idle", "SELECT count(*) FROM orders") | {"kind": "held"}] * 10
    verdict = judge(
        Evidence(_samples([29] * 10 + [10] * 5), PHASES, held, ProbeResult(1, 0, True, "no answer within 5s"))
    )
    assert verdict.outcome == LEAK and verdict.recovery_s is None
    assert recovery_sentence(verdict.recovery_s, verdict.final["total"], verdict.baseline["total"]) == (
        "the count fell under it (10 of 29), and connections stay held"
    )
    assert verdict.checks[0].passed and verdict.checks[0].detail.endswith(
        "yet 10 connection(s) are held: they took the place of pooled ones, so the count alone does not show this leak"
    )
    assert recovery_sentence(None, 30, 29) == "never" and recovery_sentence(2.0, 29, 29) == "2.0s after traffic stopped"


def test_connections_the_pool_view_saw_collected_are_a_leak_even_unlogged() -> None:
    view = {"checked_out": 0, "idle": 5, "limit": 10, "collected": [{"stack": ["app.py:9 in get()"], "count": 4}]}
    verdict = with_service_warnings(
        judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3), pool_view=view)), {}
    )
    assert verdict.outcome == LEAK and verdict.evidence == ["leak_warnings"] and not verdict.leaked_exact
    assert verdict.reasons[0].endswith("closed later by the garbage collector (its pool view saw 4)")


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            500,
            "<html><title>500 Internal Server Error</title><p>The server … Either the s",
            '"500 Internal Server Error"',
        ),
        (500, "Server got itself in trouble", '"Server got itself in trouble"'),
        (503, '{"detail": "pool exhausted"}', '"pool exhausted"'),
        (500, "", "with an empty body"),
    ],
)
def test_a_failed_probe_quotes_the_service_in_one_line(status: int, body: str, said: str) -> None:
    assert (
        answer(status, body) == f"the service answered HTTP {status}" + (": " if said.startswith('"') else " ") + said
    )


def test_connections_out_to_work_still_running_are_not_a_leak() -> None:
    # Abandoned slow requests still run when --settle ends: the pools count out what that work uses.
    busy = [s | {"active": 1} for s in _samples([6] * 15)]
    working = [_conn("a", "active", "SELECT pg_sleep(3)") | {"kind": "active"}]
    view = {"checked_out": 1, "idle": 5, "limit": 6}
    verdict = judge(Evidence(busy, PHASES, working, ProbeResult(1, 0, True, "no answer within 5s"), pool_view=view))
    assert verdict.outcome == ERROR and verdict.evidence == ["still_working"], verdict.reasons
    ghost = {"checked_out": 2, "idle": 4, "limit": 6}  # one more out than the work uses: closed behind its back
    assert judge(Evidence(busy, PHASES, working, ProbeResult(1, 0, True, "x"), pool_view=ghost)).outcome == LEAK


def test_holds_are_folded_by_route_and_counted_for_the_load_alone() -> None:
    from drainwatch import instrument
    from drainwatch.judge.verdict import holds_busy, holds_sentence
    from drainwatch.run.evidence import load_holds

    assert instrument.route_of("/items/42?x=1") == "/items/{id}"
    assert instrument.route_of("/orders/0f8fad5b-d9cb-469f-a165-70867728950e/lines") == "/orders/{id}/lines"
    before = {"holds": {"GET /slow": {"count": 10, "total_s": 30.0, "p50_s": 3.0, "p95_s": 3.0, "max_s": 3.1}}}
    after = {
        "holds": {
            "GET /slow": {"count": 30, "total_s": 90.0, "p50_s": 3.0, "p95_s": 3.0, "max_s": 3.2},
            "GET /fast": {"count": 5, "total_s": 0.05, "p50_s": 0.01, "p95_s": 0.01, "max_s": 0.01},
        }
    }
    held = load_holds(before, after)
    assert list(held) == ["GET /slow", "GET /fast"]  # most connection-time first
    assert held["GET /slow"]["count"] == 20 and held["GET /slow"]["total_s"] == 60.0
    assert load_holds(after, before) == {}  # a restarted service: counts went down, nothing is claimed
    phases = {**PHASES, "load": (PHASES["load"][0], PHASES["load"][0] + 10.0)}
    verdict = judge(Evidence(_samples([5] * 15), phases, [], ProbeResult(3, 3), holds=held))
    assert verdict.holds["GET /slow"]["busy"] == 6.0  # 60 s of holds over a 10 s load: L = λW
    assert holds_busy(verdict.holds, 20) and not holds_busy(verdict.holds, 40)
    said = holds_sentence(verdict.holds, 20)
    assert said is not None and said.startswith("GET /slow held its connection 3.0s at p95 (longest 3.2s, 20 holds)")
    assert said.endswith("keeping 6 connection(s) busy on average during the load; the pools give 20")


def test_a_locustfile_of_ones_own_that_stops_being_served_is_saturation_not_a_pass() -> None:
    """Requests a user's locustfile names its own way (no chaos kind in the name) are meant to be
    served: when they fail under the load with every connection back, the verdict is SATURATED."""
    from drainwatch.judge.load import broken_kinds, kind_counts

    stats = [
        {"Name": "GET /items", "Request Count": "200"},
        {"Name": "/cart", "Request Count": "100"},
        {"Name": "Aggregated", "Request Count": "300"},
    ]
    failures = [
        {"Name": "GET /items", "Occurrences": "150", "Error": "HTTPError('503 Server Error')"},
        {"Name": "/cart", "Occurrences": "5", "Error": "CatchResponseError('HTTP 404')"},
    ]
    kinds = kind_counts(stats, failures)
    assert set(kinds) == {"other"} and kinds["other"]["requests"] == 300 and kinds["other"]["failed"] == 155
    assert broken_kinds(kinds) == []  # a 404 of one's own is not a chaos kind that tested nothing
    verdict = judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3), load_kinds=kinds))
    assert verdict.outcome == SATURATED and verdict.exit_code == 4, verdict.reasons
    assert "150 of 300 requests of the locustfile's own (50%) failed" in verdict.reasons[0]
    served = kind_counts(stats, [])
    assert judge(Evidence(_samples([5] * 15), PHASES, [], ProbeResult(3, 3), load_kinds=served)).outcome == PASS


def test_the_diagnosis_speaks_the_stack_the_service_imported() -> None:
    from drainwatch.judge.diagnosis import diagnose

    lingering = [_conn("a", "idle in transaction", "INSERT", 12.0) | {"kind": "in_transaction", "route": "orders"}] * 2
    lingering += [_conn("a", "idle", "SELECT 1 FROM t") | {"kind": "held", "route": "chat"}] * 2
    verdict = judge(Evidence(_samples([5] * 5 + [9] * 10), PHASES, lingering, ProbeResult(3, 3)))
    assert verdict.outcome == LEAK
    flask = " ".join(
        str(v) for item in diagnose(verdict, ["flask", "psycopg2-binary", "gunicorn"]) for v in item.values()
    )
    assert "conn.rollback()" in flask and "putconn" in flask
    assert "session_factory" not in flask and "Session(" not in flask and "acquire(" not in flask
    assert "pool_timeout" not in flask and "yield" not in flask
    django = " ".join(str(v) for item in diagnose(verdict, ["django", "psycopg", "uvicorn"]) for v in item.values())
    assert "transaction.atomic()" in django and "close_old_connections()" in django
    general = " ".join(str(v) for item in diagnose(verdict) for v in item.values())
    assert "session_factory()" in general  # no stack known (the demo): the general words
