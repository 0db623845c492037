"""``ChaosUser``: a Locust user that delivers chaos as a property of the request.

Every request carries ``X-Request-ID`` and ``X-Drainwatch-Scenario`` headers and is
named ``"<scenario> <METHOD> <path>"`` in Locust's stats, so failures and leaked
connections can be traced back to the kind of traffic that caused them.

Chaos outcomes that are the point of the exercise (a hang-up delivered, a deadline that
fired, the handler error that was asked for) count as successes; what counts as a
failure is what a user of the service would call one (pool exhausted, a timeout on a
plain request, an unexpected status).

Everything is set from ``DRAINWATCH_*`` environment variables, with defaults for the
bundled demo service. An endpoint is ``"METHOD /path"`` or a JSON object
``{"method", "path", "headers", "json"}``; ``DRAINWATCH_STEADY`` may also be a JSON list
of such objects with a ``weight`` each (``drainwatch run --config`` writes these):

    DRAINWATCH_MIX                 steady=4,disconnect=2,timeout=2,error=1 (mixed.py)
    DRAINWATCH_STEADY              GET /items
    DRAINWATCH_DISCONNECT          POST /chat            (a streaming or slow request)
    DRAINWATCH_DISCONNECT_AFTER_MS 150                   (the client hangs up after this;
                                                          0: before the response starts)
    DRAINWATCH_DISCONNECT_AFTER_CHUNKS                   (or after this many chunks of a stream)
    DRAINWATCH_TIMEOUT             GET /report?deadline_ms=300&work_ms=1000
    DRAINWATCH_TIMEOUT_EXPECT      504,200
    DRAINWATCH_ERROR               POST /orders?fail=1
    DRAINWATCH_ERROR_EXPECT        502,500
    DRAINWATCH_REQUEST_TIMEOUT     5                     (seconds, any plain request)
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any

from locust import HttpUser, between

KINDS = ("steady", "disconnect", "timeout", "error")
CLIENT_ID = f"locust-{os.getpid()}"  # one per Locust process: shows which worker sent what


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DRAINWATCH_{name}", default)


Endpoint = dict[str, Any]


def _parse_endpoint(text: str) -> Endpoint:
    text = text.strip()
    if text.startswith("{"):
        spec = json.loads(text)
        return {"method": str(spec.get("method", "GET")).upper(), "path": spec["path"],
                "headers": spec.get("headers") or {}, "json": spec.get("json"), "weight": int(spec.get("weight", 1))}  # fmt: skip
    method, _, path = text.partition(" ")
    return {"method": method.upper(), "path": path.strip() or "/", "headers": {}, "json": None, "weight": 1}


def _endpoints(name: str, default: str) -> list[Endpoint]:
    text = _env(name, default).strip()
    if text.startswith("["):
        return [_parse_endpoint(json.dumps(item)) for item in json.loads(text)]
    return [_parse_endpoint(text)]


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

    steady_endpoints = _endpoints("STEADY", "GET /items")
    disconnect_endpoint = _endpoints("DISCONNECT", "POST /chat")[0]
    disconnect_after_ms = float(_env("DISCONNECT_AFTER_MS", "150"))
    disconnect_after_chunks = int(_env("DISCONNECT_AFTER_CHUNKS", "0") or 0)
    timeout_endpoint = _endpoints("TIMEOUT", "GET /report?deadline_ms=300&work_ms=1000")[0]
    timeout_expect = _statuses("TIMEOUT_EXPECT", "504,200")
    error_endpoint = _endpoints("ERROR", "POST /orders?fail=1")[0]
    error_expect = _statuses("ERROR_EXPECT", "502,500")
    request_timeout = float(_env("REQUEST_TIMEOUT", "5"))

    def _call(self, scenario: str, endpoint: Endpoint, **kwargs: Any) -> Any:
        headers = {
            "X-Request-ID": uuid.uuid4().hex[:16],
            "X-Drainwatch-Scenario": scenario,
            "X-Drainwatch-Client": CLIENT_ID,
            **endpoint.get("headers", {}),
        }
        method, path = endpoint["method"], endpoint["path"]
        if endpoint.get("json") is not None:
            kwargs["json"] = endpoint["json"]
        kwargs.setdefault("timeout", self.request_timeout)
        name = f"{scenario} {method} {path.split('?')[0]}"
        return self.client.request(method, path, name=name, headers=headers, catch_response=True, **kwargs)

    @staticmethod
    def endpoint(method: str, path: str, **extra: Any) -> Endpoint:
        """An endpoint for the helpers below: ``self.steady(self.endpoint("GET", "/items"))``."""
        return {"method": method.upper(), "path": path, "headers": {}, "json": None, **extra}

    def steady(self, endpoint: Endpoint | None = None) -> None:
        """An ordinary request that should succeed."""
        if endpoint is None:
            weights = [e["weight"] for e in self.steady_endpoints]
            endpoint = random.choices(self.steady_endpoints, weights)[0]
        with self._call("steady", endpoint) as resp:
            if resp.status_code >= 400:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:120]}")

    def disconnect(
        self, endpoint: Endpoint | None = None, after_ms: float | None = None, after_chunks: int | None = None
    ) -> None:
        """Start a request and hang up ``after_ms`` later, or after ``after_chunks`` chunks of
        its streamed body, before the response has ended."""
        chunks_wanted = after_chunks if after_chunks is not None else self.disconnect_after_chunks
        # 0 means "before the response starts": the shortest read timeout there is. Counting
        # chunks, the read timeout only guards against a server that sends nothing.
        after = max((after_ms if after_ms is not None else self.disconnect_after_ms) / 1000, 0.001)
        if chunks_wanted:
            after = max(after, self.request_timeout)
        started = time.monotonic()
        # The read timeout is the hang-up for a server that sends nothing in time;
        # the loop below hangs up on one that streams.
        with self._call("disconnect", endpoint or self.disconnect_endpoint, stream=True, timeout=(5, after)) as resp:
            try:
                if resp.status_code >= 400:
                    resp.failure(f"HTTP {resp.status_code} before the hang-up")
                    return
                for seen, _ in enumerate(resp.iter_content(chunk_size=None), start=1):
                    if (chunks_wanted and seen >= chunks_wanted) or (not chunks_wanted and time.monotonic() - started >= after):
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

    def timeout(self, endpoint: Endpoint | None = None) -> None:
        """A request whose server-side deadline fires."""
        with self._call("timeout", endpoint or self.timeout_endpoint) as resp:
            if resp.status_code in self.timeout_expect:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}, expected one of {sorted(self.timeout_expect)}")

    def error(self, endpoint: Endpoint | None = None) -> None:
        """A request whose handler raises mid-transaction."""
        with self._call("error", endpoint or self.error_endpoint) as resp:
            if resp.status_code in self.error_expect:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}, expected one of {sorted(self.error_expect)}")
