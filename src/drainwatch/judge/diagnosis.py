"""From the verdict's evidence to the likely cause and the fix, one sentence each (pure)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from drainwatch.judge import stackwords
from drainwatch.judge.verdict import DIED, LEAK, Check, Verdict
from drainwatch.units import human_seconds

GUARDRAILS = (
    "server-side guardrails while you fix it: idle_in_transaction_session_timeout on the role, a pool timeout "
    "(SQLAlchemy pool_timeout, asyncpg acquire(timeout=...)) so requests fail fast instead of hanging"
)


def diagnose(verdict: Verdict, stack: Collection[str] = ()) -> list[dict[str, Any]]:
    """One entry per pattern seen: ``pattern``, ``evidence``, ``cause``, ``fix``; in the words of
    ``stack`` (the distributions the service imported) where it has them."""
    if DIED in verdict.evidence:  # PostgreSQL or the service died: nothing to say of the service's code
        return []
    checks = {check.name: check for check in verdict.checks}
    found = _connections_left(verdict, checks, _left_by(verdict)) + _outages(verdict, checks)
    found += _from_the_log(verdict.service_warnings)
    for item in found:
        if (said := stackwords.words(item.pop("_words", ""), stack)) is not None:
            item["cause"], item["fix"] = said
    if verdict.outcome == LEAK:
        fix = GUARDRAILS
        if (timeouts := stackwords.timeouts(stack)) is not None:
            fix = (
                "server-side guardrails while you fix it: idle_in_transaction_session_timeout on the role, "
                f"{timeouts} so requests fail fast instead of hanging"
            )
        found.append({"pattern": "guardrails", "evidence": "", "cause": "", "fix": fix})
    return found


def _left_by(verdict: Verdict) -> str:
    """ "; left by …": the routes the SQL tags name, else the request most likely to have left them."""
    tagged = {route: n for route, n in verdict.routes.items() if route != "unknown"}
    by_routes = ", ".join(f"{route} ({n})" for route, n in sorted(tagged.items(), key=lambda kv: -kv[1]))
    likely = (verdict.attribution or {}).get("likely") or {}
    if not by_routes and likely:
        label, n = next(iter(likely.items()))
        by_routes = f"most likely {label} ({n})"
    return f"; left by {by_routes}" if by_routes else ""


def _connections_left(verdict: Verdict, checks: dict[str, Check], where: str) -> list[dict[str, Any]]:
    """What the connections still open after settle say: in a transaction, one per request, held, invisible."""
    found: list[dict[str, Any]] = []
    iit = verdict.idle_in_transaction
    if iit["count"]:
        found.append(
            {
                "pattern": "idle in transaction after traffic stopped",
                "_words": "idle_in_transaction",
                "evidence": f"{iit['count']} connection(s) idle in transaction, oldest {human_seconds(iit['oldest_s'])}{where}",
                "cause": "a commit or rollback missing on an error path: a session closed after the work instead of in "
                "finally, or a yield dependency without try/finally",
                "fix": "async with session_factory() as session, session.begin(): ...; put the yield of a dependency "
                "inside try/finally",
            }
        )
    held = verdict.leaked_by_kind.get("held", 0)
    if verdict.per_request and verdict.outcome == LEAK:
        found.append(
            {
                "pattern": "a connection per request (or thread), never closed",
                "_words": "per_request",
                "evidence": f"{max(verdict.leaked, held + iit['count'])} connection(s) left open, each opened at its own "
                f"moment during the run{where}",
                "cause": "connections opened per request or per worker thread and kept: Django's CONN_MAX_AGE > 0 under "
                "ASGI (each request's thread keeps its own) or in threads that never call close_old_connections(), "
                "a sync SQLAlchemy Session not closed in finally/with, psycopg2's ThreadedConnectionPool.getconn() "
                "without putconn()",
                "fix": "Django under ASGI: CONN_MAX_AGE = 0 (or Django 5.1+'s pooled backend: OPTIONS = {'pool': True}); "
                "with Session(engine) as session: ...; putconn() in finally",
            }
        )
    elif held:
        found.append(
            {
                "pattern": "idle connections still checked out",
                "_words": "held",
                "evidence": f"{held} idle connection(s) whose last statement is the app's SQL, not the pool's reset{where}",
                "cause": "a release that never happened: cleanup that awaits in finally while the task is being "
                "cancelled (client disconnect, deadline), a CancelledError caught and swallowed, or a release "
                "written after the work instead of in finally",
                "fix": "async with pool.acquire() as conn: ...; no other await before the release in cleanup; "
                "re-raise CancelledError",
            }
        )
    invisible = verdict.leaked_by_kind.get("invisible", 0)
    if invisible:
        found.append(
            {
                "pattern": "the pool counts connections PostgreSQL no longer has",
                "evidence": checks["pool_view"].detail if "pool_view" in checks else f"{invisible} invisible",
                "cause": "connections checked out and dropped: the garbage collector or the server closed them, "
                "the pool still waits for them to come back",
                "fix": "give every checkout back in finally or async with; never let a checked-out connection go out of scope",
            }
        )
    return found


def _outages(verdict: Verdict, checks: dict[str, Check]) -> list[dict[str, Any]]:
    """What else went wrong: a service that starves, a server that filled, work for clients that left."""
    found: list[dict[str, Any]] = []
    held, invisible = verdict.leaked_by_kind.get("held", 0), verdict.leaked_by_kind.get("invisible", 0)
    probe = checks.get("probe")
    if (
        probe is not None
        and not probe.passed
        and verdict.probe.get("target_alive", True)
        and not (verdict.idle_in_transaction["count"] or held or invisible)
    ):
        found.append(
            {
                "pattern": "the service starves with no extra connections visible",
                "evidence": probe.detail,
                "cause": "pool waiters: connections held across a slow await (an LLM call, a stream), or leaked "
                "connections closed behind the pool's back",
                "fix": "hold a connection only for the queries, not across slow non-database work; expose the pool's "
                "own counts (drainwatch.instrument) so drainwatch can tell which",
            }
        )
    server = verdict.server or {}
    if server.get("full"):
        found.append(
            {
                "pattern": "the server, not the pool, ran out first",
                "evidence": checks["server_limit"].detail if "server_limit" in checks else "",
                "cause": "the leaked connections filled PostgreSQL's max_connections: every other client, the service's "
                "own new connections included, is refused (`too many clients already`)",
                "fix": "fix the leak above; meanwhile cap the service's connections below max_connections (a pool with a "
                "maximum, PgBouncer) and set idle_session_timeout / idle_in_transaction_session_timeout",
            }
        )
    zombie = verdict.zombie
    if zombie.get("peak_active") and zombie.get("lasted_s", 0) >= 1:
        found.append(
            {
                "pattern": "work for clients that have gone",
                "evidence": f"{zombie['peak_active']} backend(s) still active {human_seconds(zombie['lasted_s'])} after traffic stopped",
                "cause": "plain endpoints are not cancelled when the client hangs up: the abandoned work runs to the end",
                "fix": "stream the reply, cancel on disconnect while the response is in flight, or enforce server-side deadlines",
            }
        )
    return found


# What each kind of line in the service's log means, and what to do about it.
LOG_PATTERNS = {
    "gc_cleanup": (
        "connections left to the garbage collector",
        "a Session or connection dropped without close(): SQLAlchemy gives it back only when the garbage collector "
        "finds it, at a moment nobody picks (a leak that comes and goes)",
        "with Session(engine) as session / async with AsyncSession(engine) as session: ...; "
        "close in finally, never rely on __del__",
    ),
    "connection_dropped": (
        "connections left to the garbage collector",
        "database connections dropped without close(): each stays open on the server until the garbage collector "
        "finds it (psycopg: 'connection ... was deleted while still open'; asyncpg: 'unclosed connection'); "
        "Django under ASGI with CONN_MAX_AGE > 0 leaves one per request",
        "close them in finally or use them as context managers; Django under ASGI: CONN_MAX_AGE = 0 or its pool",
    ),
    "unclosed": (
        "resources never closed",
        "connections, transports or sockets dropped without close(): each holds its server connection until the "
        "garbage collector runs",
        "close them in finally or use them as context managers; run with --dev-mode to see every ResourceWarning",
    ),
    "task_destroyed": (
        "tasks destroyed while pending",
        "background tasks nobody awaited or kept a reference to, killed mid-flight: their connections are "
        "never released",
        "keep a reference to every task (a TaskGroup) and await it; release connections in finally",
    ),
    "never_awaited": (
        "coroutines never awaited",
        "a call like session.close() or conn.close() without await: it never ran",
        "await it (await session.close()); --dev-mode shows where",
    ),
}


def _from_the_log(counts: dict[str, int]) -> list[dict[str, Any]]:
    found = []
    for kind, (pattern, cause, fix) in LOG_PATTERNS.items():
        if counts.get(kind):
            evidence = f"{counts[kind]} line(s) in the service's log (service-warnings.csv)"
            found.append({"pattern": pattern, "evidence": evidence, "cause": cause, "fix": fix})
    return found
