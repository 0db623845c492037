"""``ChaosUser``: a Locust user that delivers chaos as a property of the request.

Every request carries ``X-Request-ID`` and ``X-Drainwatch-Scenario`` headers and is
named ``"<scenario> <METHOD> <path>"`` in Locust's stats, so failures and leaked
connections can be traced back to the kind of traffic that caused them.

Chaos outcomes that are the point of the exercise (a hang-up delivered, a deadline that
fired, the handler error that was asked for) count as successes; what counts as a
failure is what a user of the service would call one (pool exhausted, a timeout on a
plain request, an unexpected status).

Everything is set from ``DRAINWATCH_*`` environment variables, with defaults for the
bundled demo service:

    DRAINWATCH_MIX                 steady=4,disconnect=2,timeout=2,error=1 (mixed.py)
    DRAINWATCH_STEADY              GET /items
    DRAINWATCH_DISCONNECT          POST /chat            (a streaming or slow request)
    DRAINWATCH_DISCONNECT_AFTER_MS 150                   (the client hangs up after this)
    DRAINWATCH_TIMEOUT             GET /report?deadline_ms=300&work_ms=1000
    DRAINWATCH_TIMEOUT_EXPECT      504,200
    DRAINWATCH_ERROR               POST /orders?fail=1
    DRAINWATCH_ERROR_EXPECT        502,500
    DRAINWATCH_REQUEST_TIMEOUT     5                     (seconds, any plain request)
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from locust import HttpUser, between

KINDS = ("steady", "disconnect", "timeout", "error")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DRAINWATCH_{name}", default)


def _endpoint(name: str, default: str) -> tuple[str, str]:
    method, _, path = _env(name, default).strip().partition(" ")
    return method.upper(), path.strip() or "/"


def _statuses(name: str, default: str) -> set[int]:
    return {int(code) for code in _env(name, default).split(",") if code.strip()}


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        if kind.strip() in KINDS:
            mix[kind.strip()] = int(weight or 1)
    return mix


class ChaosUser(HttpUser):
    """Base class: subclass it and call the helpers from your tasks."""

    abstract = True
    wait_time = between(0.0, 0.1)

    steady_endpoint = _endpoint("STEADY", "GET /items")
    disconnect_endpoint = _endpoint("DISCONNECT", "POST /chat")
    disconnect_after_ms = float(_env("DISCONNECT_AFTER_MS", "150"))
    timeout_endpoint = _endpoint("TIMEOUT", "GET /report?deadline_ms=300&work_ms=1000")
    timeout_expect = _statuses("TIMEOUT_EXPECT", "504,200")
    error_endpoint = _endpoint("ERROR", "POST /orders?fail=1")
    error_expect = _statuses("ERROR_EXPECT", "502,500")
    request_timeout = float(_env("REQUEST_TIMEOUT", "5"))

    def _call(self, scenario: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {
            "X-Request-ID": uuid.uuid4().hex[:16],
            "X-Drainwatch-Scenario": scenario,
            **kwargs.pop("headers", {}),
        }
        name = f"{scenario} {method} {path.split('?')[0]}"
        kwargs.setdefault("timeout", self.request_timeout)
        return self.client.request(method, path, name=name, headers=headers, catch_response=True, **kwargs)

    def steady(self, method: str | None = None, path: str | None = None) -> None:
        """An ordinary request that should succeed."""
        m, p = (method, path) if method and path else self.steady_endpoint
        with self._call("steady", m, p) as resp:
            if resp.status_code >= 400:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:120]}")

    def disconnect(self, method: str | None = None, path: str | None = None, after_ms: float | None = None) -> None:
        """Start a request and hang up ``after_ms`` later, before the response has ended."""
        m, p = (method, path) if method and path else self.disconnect_endpoint
        after = (after_ms if after_ms is not None else self.disconnect_after_ms) / 1000
        started = time.monotonic()
        # The read timeout is the hang-up for a server that sends nothing in time;
        # the loop below hangs up on one that streams.
        with self._call("disconnect", m, p, stream=True, timeout=(5, after)) as resp:
            try:
                if resp.status_code >= 400:
                    resp.failure(f"HTTP {resp.status_code} before the hang-up")
                    return
                for _ in resp.iter_content(chunk_size=None):
                    if time.monotonic() - started >= after:
                        resp.success()
                        return
                resp.failure(f"the response ended before the client hung up at {after * 1000:.0f} ms")
            except Exception as exc:  # a read timeout is the hang-up we asked for
                if "timed out" in str(exc).lower():
                    resp.success()
                else:
                    resp.failure(f"{type(exc).__name__}: {exc}")
            finally:
                resp.close()  # closes the socket: the server sees the client go

    def timeout(self, method: str | None = None, path: str | None = None) -> None:
        """A request whose server-side deadline fires."""
        m, p = (method, path) if method and path else self.timeout_endpoint
        with self._call("timeout", m, p) as resp:
            if resp.status_code in self.timeout_expect:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}, expected one of {sorted(self.timeout_expect)}")

    def error(self, method: str | None = None, path: str | None = None) -> None:
        """A request whose handler raises mid-transaction."""
        m, p = (method, path) if method and path else self.error_endpoint
        with self._call("error", m, p) as resp:
            if resp.status_code in self.error_expect:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}, expected one of {sorted(self.error_expect)}")
