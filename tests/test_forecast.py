"""The forecast from known counts (pure)."""

from __future__ import annotations

import pytest

from drainwatch.report.forecast import Production, forecast, parse_share, poisson_interval, requests_by_kind


def test_poisson_interval_matches_tables() -> None:
    assert poisson_interval(0) == (0.0, pytest.approx(3.689, abs=0.03))
    low, high = poisson_interval(10)
    assert low == pytest.approx(4.795, abs=0.02) and high == pytest.approx(18.39, abs=0.05)


def test_time_to_exhaustion_from_known_counts() -> None:
    # 1 leak per 100 disconnects; 40 req/s with 0.5 % disconnects → 0.002 leaks/s → 30 conns in 15,000 s.
    prod = Production(rps=40, shares={"disconnect": 0.005}, pool=30)
    result = forecast({"disconnect": 1000, "steady": 5000}, {"disconnect": 10}, prod)
    assert result.seconds == pytest.approx(15000)
    assert result.low_s < result.seconds < result.high_s  # a range: ten leaks are not a precise figure
    assert result.sentence.startswith(
        "at 40 req/s with 0.5 % disconnect, a pool of 30 is exhausted in about 4h 10m (95 %: "
    )
    assert result.rates["disconnect"]["rate"] == pytest.approx(0.01)


def test_no_leak_seen_is_not_never() -> None:
    prod = Production(rps=40, shares={"error": 0.01}, pool=30)
    result = forecast({"error": 500}, {}, prod)
    assert result.seconds is None and result.high_s is None
    assert "not seen leaking: no leak in 500 faulted requests" in result.sentence
    assert "as little as" in result.sentence  # 0 of 500 still allows a small rate


def test_exhausted_pool_makes_it_an_upper_bound() -> None:
    prod = Production(rps=10, shares={"timeout": 0.1}, pool=10)
    result = forecast({"timeout": 200}, {"timeout": 10}, prod, pool_exhausted=True)
    assert "at most" in result.sentence and result.upper_bound_only
    assert any("lower bounds" in a for a in result.assumptions)


def test_the_server_runs_out_before_the_pools_when_they_add_up_to_more() -> None:
    # 4 instances with pools of 30 share a server giving 97: 120 > 97, so the server goes first,
    # after 97 leaks in all (the same 0.002 leaks/s: 48,500 s); no pool is full by then.
    prod = Production(rps=40, shares={"disconnect": 0.005}, pool=30, instances=4, server=97)
    result = forecast({"disconnect": 1000}, {"disconnect": 10}, prod)
    assert result.seconds == pytest.approx(48500)
    assert result.sentence.startswith(
        "at 40 req/s with 0.5 % disconnect, 4 instances with a pool of 30 each, a server giving 97 connections: "
        "the server, not the pool, runs out first: its connections are taken in about 13h 28m"
    )
    assert any("shared evenly by the 4 instances" in a for a in result.assumptions)
    roomy = Production(rps=40, shares={"disconnect": 0.005}, pool=30, instances=2, server=500)
    result = forecast({"disconnect": 1000}, {"disconnect": 10}, roomy)
    assert result.seconds == pytest.approx(30000)  # each pool gets half the leaks: 30 / 0.001
    assert "each pool is exhausted in about 8h 20m" in result.sentence


def test_no_pool_limit_leaves_only_the_server() -> None:
    prod = Production(rps=10, shares={"error": 0.1}, pool=None, server=97)  # Django: a connection per request
    result = forecast({"error": 100}, {"error": 100}, prod)
    assert result.seconds == pytest.approx(97)
    assert "no pool limit, a server giving 97 connections: the server, not the pool" in result.sentence


def test_leaks_on_steady_requests_count_at_the_share_that_is_no_fault() -> None:
    prod = Production(rps=10, shares={"error": 0.2}, pool=40)
    result = forecast({"steady": 1000, "error": 100}, {"steady": 10}, prod)
    assert result.seconds == pytest.approx(40 / (10 * 0.8 * 0.01))  # 8 steady req/s, 1 in 100 leaks
    assert forecast({"steady": 1000}, {}, prod).rates == {}  # steady traffic that never leaked is no fault


def test_untagged_leaks_are_forecast_by_the_request_most_likely_to_have_left_them(tmp_path) -> None:
    import json

    from drainwatch.report.forecast import from_run_dir

    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "locust_stats.csv").write_text(
        "Type,Name,Request Count\nGET,error GET /report,100\nGET,steady GET /items,900\n,Aggregated,1000\n"
    )
    summary = {"verdict": "LEAK", "scenarios": {"unknown": 6}, "attribution": {"likely": {"error GET /report": 5}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    result = from_run_dir(tmp_path, Production(rps=10, shares={"error": 0.1}, pool=10))
    assert result.rates["error"]["leaked"] == 5 and result.seconds == pytest.approx(10 / (10 * 0.1 * 0.05))


def test_requests_by_kind_and_shares() -> None:
    rows = [
        {"Name": "disconnect POST /chat", "Request Count": "30"},
        {"Name": "steady GET /items", "Request Count": "70"},
        {"Name": "steady GET /other", "Request Count": "5"},
        {"Name": "Aggregated", "Request Count": "105"},
    ]
    assert requests_by_kind(rows) == {"disconnect": 30, "steady": 75}
    assert parse_share("0.5%") == pytest.approx(0.005) and parse_share("0.02") == 0.02
