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


def test_requests_by_kind_and_shares() -> None:
    rows = [
        {"Name": "disconnect POST /chat", "Request Count": "30"},
        {"Name": "steady GET /items", "Request Count": "70"},
        {"Name": "steady GET /other", "Request Count": "5"},
        {"Name": "Aggregated", "Request Count": "105"},
    ]
    assert requests_by_kind(rows) == {"disconnect": 30, "steady": 75}
    assert parse_share("0.5%") == pytest.approx(0.005) and parse_share("0.02") == 0.02
