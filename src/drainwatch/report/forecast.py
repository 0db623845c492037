"""The 2am outage, predicted: how long until production exhausts its pool.

From a run: the leak rate per faulted request of each chaos kind (connections left open
by that kind / requests of that kind). With production's figures — requests per second,
the share of requests that disconnect, time out or fail, the pool size — the pool is
exhausted after ``pool / (rps × Σ share_k × rate_k)`` seconds.

Honest about small numbers: each leak count gets a 95 % Poisson interval, so three leaks
give a range, not a figure. And when the pool was exhausted during the run, leaks could
no longer happen after that point, so the measured rates are lower bounds and the
forecast an upper bound ("at most").
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drainwatch.units import human_seconds

FAULT_KINDS = ("disconnect", "timeout", "error")
Z95 = 1.959964


def poisson_interval(n: int) -> tuple[float, float]:
    """95 % interval for a Poisson count (Wilson–Hilferty; exact enough from n = 0)."""
    lower = 0.0 if n == 0 else n * (1 - 1 / (9 * n) - Z95 / (3 * math.sqrt(n))) ** 3
    m = n + 1
    upper = m * (1 - 1 / (9 * m) + Z95 / (3 * math.sqrt(m))) ** 3
    return max(0.0, lower), upper


@dataclass
class Production:
    rps: float  # for the whole service, shared by its instances
    shares: dict[str, float]  # kind → fraction of all requests (0.005 = 0.5 %)
    pool: int | None  # per instance; None: unknown or unbounded (then only the server can run out)
    instances: int = 1
    server: int | None = None  # connections the database server gives all of them

    def __post_init__(self) -> None:
        from drainwatch.plan import check_production

        # UsageError: no forecast from a pool of -3 at nan req/s
        check_production(self.rps, self.pool, self.instances, self.server)
        if not self.pool and not self.server:
            from drainwatch.errors import UsageError

            raise UsageError("a forecast needs a pool size or the server's connections", hint="give --prod-pool")

    def capacity(self) -> tuple[float, str]:
        """Leaked connections production can absorb before the first thing runs out, and which
        ("pool" or "server") that is.

        Each instance leaks into its own pool at 1/instances of the rate; all of them leak into
        the one server. It runs out first when the pools together are larger than it.
        """
        pools = self.pool * self.instances if self.pool else math.inf
        if self.server is not None and self.server < pools:
            return float(self.server), "server"
        return float(pools), "pool"


@dataclass
class Forecast:
    rates: dict[str, dict[str, float]]  # kind → {leaked, requests, rate, low, high}
    seconds: float | None  # point estimate; None: no leak seen
    low_s: float | None  # soonest (highest plausible leak rate)
    high_s: float | None  # latest; None: possibly never
    upper_bound_only: bool
    sentence: str
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def forecast(
    requests: Mapping[str, int], leaked: Mapping[str, int], prod: Production, *, pool_exhausted: bool = False
) -> Forecast:
    """Predict the time to exhaustion (pure). ``requests``/``leaked`` are per chaos kind."""
    rates: dict[str, dict[str, float]] = {}
    per_s = low_per_s = high_per_s = 0.0
    # Steady requests count only when they leaked too (every request leaks: Django under ASGI);
    # they are the share of production's requests that is no fault.
    steady = {"steady": max(0.0, 1 - sum(prod.shares.values()))} if leaked.get("steady") else {}
    for kind in (*FAULT_KINDS, *steady):
        n_req, n_leak = int(requests.get(kind, 0)), int(leaked.get(kind, 0))
        if n_req == 0:
            continue
        low, high = poisson_interval(n_leak)
        rate = n_leak / n_req
        rates[kind] = {
            "leaked": n_leak,
            "requests": n_req,
            "rate": rate,
            "low": min(1.0, low / n_req),
            "high": min(1.0, high / n_req),
        }
        share_rps = prod.rps * (steady.get(kind) or prod.shares.get(kind, 0.0))
        per_s += share_rps * rate
        low_per_s += share_rps * rates[kind]["low"]
        high_per_s += share_rps * rates[kind]["high"]

    room, first = prod.capacity()
    seconds = room / per_s if per_s > 0 else None
    low_s = room / high_per_s if high_per_s > 0 else None
    high_s = room / low_per_s if low_per_s > 0 else None
    shares = ", ".join(f"{share * 100:g} % {kind}" for kind, share in prod.shares.items() if share > 0) or "no faults"
    where = f"at {prod.rps:g} req/s with {shares}, {_setup(prod)}"
    server_first = first == "server"
    plain = where
    if server_first:
        where, runs_out = f"{where}: the server, not the pool, runs out first:", "its connections are taken"
    elif prod.instances > 1:
        where, runs_out = f"{where}:", "each pool is exhausted"
    else:
        runs_out = "is exhausted"
    if seconds is None:
        seen = sum(int(r["requests"]) for r in rates.values())
        sentence = f"{plain} is not seen leaking: no leak in {seen} faulted requests" + (
            f"; it could still be exhausted in as little as {human_seconds(low_s)}" if low_s else ""
        )
    elif pool_exhausted:
        sentence = f"{where} {runs_out} in at most about {human_seconds(seconds)}"
    else:
        span = f" (95 %: {human_seconds(low_s)} to {human_seconds(high_s) if high_s else 'never'})" if low_s else ""
        sentence = f"{where} {runs_out} in about {human_seconds(seconds)}{span}"
    assumptions = [
        "leak rates per faulted request as measured in this run, the same in production",
        "leaked connections are never reclaimed (no server-side timeout, no restart)",
        "the shares are of all requests, and every faulted request hits a leaking path as often as here",
    ]
    if prod.instances > 1:
        assumptions.append(f"the load is shared evenly by the {prod.instances} instances")
    if pool_exhausted:
        assumptions.append(
            "the pool was exhausted during this run, so fewer leaks could happen than would have: "
            "the rates are lower bounds and the time an upper bound"
        )
    return Forecast(rates, seconds, low_s, high_s, pool_exhausted, sentence, assumptions)


def _setup(prod: Production) -> str:
    pools = f"a pool of {prod.pool}" if prod.pool else "no pool limit"
    if prod.instances > 1:
        pools = f"{prod.instances} instances with {pools} each"
    return pools + (f", a server giving {prod.server} connections" if prod.server else "")


def requests_by_kind(stats_rows: list[Mapping[str, str]]) -> dict[str, int]:
    """Request counts per chaos kind from Locust's stats rows (names are "<kind> METHOD /path").

    Raises ValueError for a count that is not one.
    """
    counts: dict[str, int] = {}
    for row in stats_rows:
        name = row.get("Name") or ""  # None in a row cut short
        if name == "Aggregated" or " " not in name:
            continue
        kind = name.split(" ", 1)[0]
        counts[kind] = counts.get(kind, 0) + _count(float(row.get("Request Count") or 0), "Request Count")
    return counts


def _count(value: Any, what: str) -> int:
    """``value`` as a count of 0 or more; ValueError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} {value!r} is not a count")
    return int(value)


def _counts(table: Any, what: str, key: str | None = None) -> dict[str, int]:
    """kind → count from a JSON table (of rows holding ``key``, when given); ValueError naming ``what``."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{what} is not a table")
    rows = {str(kind): row.get(key) if key and isinstance(row, Mapping) else row for kind, row in table.items()}
    return {kind: _count(value, f"{what}.{kind}" + (f".{key}" if key else "")) for kind, value in rows.items()}


def parse_share(text: str) -> float:
    """``0.5%`` → 0.005; ``0.005`` → 0.005."""
    text = text.strip()
    value = float(text.removesuffix("%"))  # one % sign: 50%% is no share
    return value / 100 if text.endswith("%") else value


def from_run_dir(run_dir: Path, prod: Production) -> Forecast:
    """The forecast for a finished run folder (its summary.json and Locust stats).

    Raises UsageError when the folder has no verdict to forecast from.
    """
    from drainwatch.errors import UsageError
    from drainwatch.rundir import LOCUST_PREFIX, RUN_JSON, SUMMARY_JSON, read_json

    hint = "pass a run folder with summary.json and locust_stats.csv, as drainwatch run wrote it"
    try:
        summary, record = read_json(run_dir / SUMMARY_JSON), read_json(run_dir / RUN_JSON)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{run_dir} has no finished run to forecast from", hint=hint) from exc
    if not isinstance(summary, dict) or not isinstance(record, dict):
        which = SUMMARY_JSON if not isinstance(summary, dict) else RUN_JSON
        raise UsageError(f"{run_dir}/{which} does not hold a run (not a JSON object)", hint=hint)
    try:
        isolation = record.get("isolation")
        if isolation:  # --isolate: each kind measured alone, the cleanest rates there are
            requests = _counts(isolation, "isolation", "requests")
            leaked = _counts(isolation, "isolation", "leaked")
            exhausted = any(isinstance(row, Mapping) and row.get("lower_bound") for row in isolation.values())
            return forecast(requests, leaked, prod, pool_exhausted=exhausted)
        with open(run_dir / f"{LOCUST_PREFIX}_stats.csv", newline="", encoding="utf-8") as handle:
            requests = requests_by_kind(list(csv.DictReader(handle)))
        leaked = _leaked_by_kind(summary)
    except OSError as exc:
        raise UsageError(f"{run_dir} has no finished run to forecast from", hint=hint) from exc
    except (ValueError, csv.Error) as exc:  # a count that is none, a CSV cut short or not text
        raise UsageError(f"{run_dir} holds a run that cannot be read ({_first_line(exc)})", hint=hint) from exc
    if not summary.get("verdict"):
        raise UsageError(f"the run in {run_dir} reached no verdict", hint="forecast from a completed run")
    probe = summary["probe"] if isinstance(summary.get("probe"), dict) else {}
    server = summary["server"] if isinstance(summary.get("server"), dict) else {}
    exhausted = bool(probe) and not probe.get("passed", True) and probe.get("target_alive", True)
    result = forecast(requests, leaked, prod, pool_exhausted=exhausted or bool(server.get("full")))
    if server.get("full"):
        result.assumptions.append(
            f"in this run the server, not the pool, ran out first (max_connections {server.get('max_connections')}): "
            "give --prod-max-connections to see whether production's does too"
        )
    return result


def _leaked_by_kind(summary: Mapping[str, Any]) -> dict[str, int]:
    """Leaked connections per chaos kind: from the SQL tags where the app has them, else from the
    request most likely to have left each one ("error GET /report" is the error kind's)."""
    tagged = _counts(summary.get("scenarios") or {}, "scenarios")
    tagged.pop("unknown", None)
    if tagged:
        return tagged
    attribution = summary.get("attribution")
    likely = attribution.get("likely") if isinstance(attribution, Mapping) else None
    found: dict[str, int] = {}
    for label, count in _counts(likely or {}, "attribution.likely").items():
        kind = label.split(" ", 1)[0]
        found[kind] = found.get(kind, 0) + count
    return found


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
