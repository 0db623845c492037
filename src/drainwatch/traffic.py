"""The traffic a run sends: which request each chaos kind makes, and how it reaches the Locust scenarios.

The description comes from ``[[endpoints]]`` and ``[chaos.*]`` in a config file (or
``--endpoint``/``--header``), travels to the scenarios as ``DRAINWATCH_*`` environment (see
``drainwatch.scenarios.chaos``), and is read back here so drainwatch can try every request
once before the load (preflight) and pick a probe. The demo's routes are the default only
for the demo: a service drainwatch has never seen must say what to call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from drainwatch.errors import UsageError

CHAOS_REQUEST_KINDS = ("disconnect", "timeout", "error")
DEMO_REQUESTS = {
    "steady": "GET /items",
    "disconnect": "POST /chat",
    "timeout": "GET /report?deadline_ms=300&work_ms=1000",
    "error": "POST /orders?fail=1",
}
DEMO_PROBE = "/health/db"
# The scenarios' own variables (drainwatch.scenarios.chaos): set in drainwatch's environment, they
# describe the traffic as a config file's [[endpoints]] and [chaos.*] do, and win over the file.
SCENARIO_VARIABLES = tuple(
    f"DRAINWATCH_{name}"
    for name in (
        "STEADY",
        "DISCONNECT",
        "DISCONNECT_AFTER_MS",
        "DISCONNECT_AFTER_CHUNKS",
        "TIMEOUT",
        "TIMEOUT_EXPECT",
        "TIMEOUT_CLIENT_MS",
        "ERROR",
        "ERROR_EXPECT",
        "REQUEST_TIMEOUT",
    )
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    weight: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def spec(self) -> dict[str, Any]:
        """The JSON form the scenarios read."""
        out: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "weight": self.weight,
        }
        if self.json is not None:
            out["json"] = self.json
        return out


def parse_chaos(text: str) -> dict[str, str]:
    """``--chaos "error=GET /orders/999 404"`` → the scenario variables it sets: the kind's
    request, and the statuses that mean its chaos was delivered when given (the error kind's
    failing answers, the timeout kind's deadline answers). Raises UsageError naming the form."""
    kind, sep, rest = text.partition("=")
    kind = kind.strip()
    form = 'write it like --chaos "error=GET /orders/999 404" (disconnect, timeout or error)'
    if not sep or kind not in CHAOS_REQUEST_KINDS:
        raise UsageError(f"--chaos {text!r} does not name a chaos kind", hint=form)
    words = rest.split()
    statuses = words.pop() if len(words) == 3 else ""
    request = parse_request(" ".join(words), what=f"--chaos {kind}")
    env = {f"DRAINWATCH_{kind.upper()}": json.dumps(request.spec())}
    if statuses:
        if kind == "disconnect":
            raise UsageError(f"--chaos {text!r}: a hang-up expects no status", hint="drop the statuses")
        codes = statuses.split(",")
        if not all(c.isascii() and c.isdigit() and 100 <= int(c) <= 599 for c in codes):
            raise UsageError(f"--chaos {text!r}: {statuses!r} is not a list of HTTP statuses", hint=form)
        env[f"DRAINWATCH_{kind.upper()}_EXPECT"] = statuses
    return env


def parse_request(text: str, *, what: str = "request") -> Request:
    """``"GET /items"`` or the JSON object form → Request. Raises UsageError for anything else."""
    text = text.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
            method, path, weight = spec.get("method", "GET"), spec["path"], int(spec.get("weight", 1))
            headers = dict(spec.get("headers") or {})
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            raise UsageError(f"{what} {text!r} is not a request", hint='write it like "GET /items"') from exc
        if not isinstance(method, str) or not isinstance(path, str) or not _request_line(method, path):
            raise UsageError(
                f"{what} {text!r} is not a request",
                hint='give a method and a path, like method = "GET", path = "/items"',
            )
        if weight < 0:
            raise UsageError(f"{what} {text!r} has a negative weight", hint="give it a weight of 0 or more")
        for name, value in headers.items():
            check_header(str(name), str(value), what=what)
        return Request(method.upper(), path, headers, spec.get("json"), weight)
    method, _, path = text.partition(" ")
    path = path.strip()
    if not _request_line(method, path):
        raise UsageError(f"{what} {text!r} is not a request", hint='write it like "GET /items" (method, space, path)')
    return Request(method.upper(), path)


def _request_line(method: str, path: str) -> bool:
    """A method of ASCII letters and a path that an HTTP request line can carry."""
    return method.isascii() and method.isalpha() and request_path(path)


def request_path(path: str) -> bool:
    """True for a path from the root without spaces (%20 in a URL), control characters or undecodable
    bytes (lone surrogates)."""
    return path.startswith("/") and not any(c <= " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in path)


# RFC 9110 field names are tokens; values are visible ASCII, spaces and tabs (httpx sends no other).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_header(name: str, value: str, *, what: str = "--header") -> None:
    """Raise UsageError unless ``name: value`` can be sent as an HTTP header."""
    if not name or not set(name) <= _TOKEN:
        raise UsageError(
            f"{what}: {name!r} is not a header name",
            hint="use letters, digits and -, like X-Request-Id or Authorization",
        )
    if not all(c == "\t" or " " <= c <= "~" for c in value):
        raise UsageError(
            f"{what}: the value of {name} holds a character a header cannot carry ({value!r})",
            hint="header values are plain ASCII on one line",
        )


def parse_header(text: str) -> tuple[str, str]:
    """``"Authorization: Bearer x"`` → (name, value)."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"--header {text!r} is not a header", hint='write it like "Authorization: Bearer TOKEN"')
    check_header(name.strip(), value.strip())
    return name.strip(), value.strip()


@dataclass(frozen=True)
class Traffic:
    """What each kind sends; ``None`` for a chaos kind this service has no request for."""

    steady: tuple[Request, ...]
    chaos: Mapping[str, Request | None]
    settings: Mapping[str, str]  # the other DRAINWATCH_* knobs (hang-up delay, expected statuses…)

    def __post_init__(self) -> None:
        object.__setattr__(self, "chaos", MappingProxyType(dict(self.chaos)))
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def env(self) -> dict[str, str]:
        """The environment the scenarios read."""
        env = dict(self.settings)
        env["DRAINWATCH_STEADY"] = json.dumps([r.spec() for r in self.steady])
        for kind, request in self.chaos.items():
            if request is not None:
                env[f"DRAINWATCH_{kind.upper()}"] = json.dumps(request.spec())
        return env

    def requests(self, mix: Mapping[str, int]) -> list[tuple[str, Request]]:
        """Every (kind, request) the load will send, for preflight."""
        out = [("steady", r) for r in self.steady] if mix.get("steady") or mix.get("disconnect") else []
        return out + [(k, r) for k, r in self.chaos.items() if r is not None and mix.get(k)]

    def expected(self, kind: str) -> set[int]:
        """The statuses a chaos kind is told to expect (``[chaos.error] expect``), if any."""
        text = self.settings.get(f"DRAINWATCH_{kind.upper()}_EXPECT", "")
        return {int(code) for code in text.split(",") if code.strip().isdigit()}

    def with_headers(self, headers: Mapping[str, str]) -> Traffic:
        """Every request with ``headers`` added (its own headers win)."""
        if not headers:
            return self

        def add(r: Request) -> Request:
            return replace(r, headers={**headers, **r.headers})

        return replace(
            self,
            steady=tuple(add(r) for r in self.steady),
            chaos={k: add(r) if r else None for k, r in self.chaos.items()},
        )

    def public(self) -> dict[str, Any]:
        """For run.json: header values that look like credentials are redacted."""

        def safe(r: Request | None) -> str | None:
            if r is None:
                return None
            hidden = [name for name in r.headers if _credential(name)]
            return str(r) + (f" (headers: {', '.join(hidden)} redacted)" if hidden else "")

        return {
            "steady": [safe(r) for r in self.steady],
            **{k: safe(r) for k, r in self.chaos.items()},
            "settings": dict(self.settings),
        }


def _credential(name: str) -> bool:
    return (
        name.lower() in ("authorization", "cookie", "proxy-authorization")
        or "token" in name.lower()
        or "key" in name.lower()
    )


def traffic_from(
    env: Mapping[str, str],
    *,
    demo: bool,
    endpoints: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    own_locustfile: bool = False,
) -> Traffic:
    """The traffic of a run, from the config file's environment and ``--endpoint`` requests.

    The demo gets its own routes for whatever is not given. Any other service must name at
    least one steady endpoint; its disconnect kind hangs up on the first steady endpoint
    unless told otherwise, and timeout and error exist only when configured.
    Raises UsageError when a service that is not the demo names no endpoint (and brings no locustfile).
    """
    env = dict(env)
    _check_settings(env)
    for name, value in (headers or {}).items():
        check_header(str(name), str(value), what="[target] headers")
    steady = [parse_request(text, what="--endpoint") for text in endpoints]
    if not steady and "DRAINWATCH_STEADY" in env:
        steady = _steady_from(env["DRAINWATCH_STEADY"])
    env.pop("DRAINWATCH_STEADY", None)
    chaos: dict[str, Request | None] = {}
    for kind in CHAOS_REQUEST_KINDS:
        text = env.pop(f"DRAINWATCH_{kind.upper()}", None)
        chaos[kind] = parse_request(text, what=f"[chaos.{kind}] request") if text else None
    if demo:
        steady = steady or [parse_request(DEMO_REQUESTS["steady"])]
        chaos = {k: r or parse_request(DEMO_REQUESTS[k]) for k, r in chaos.items()}
    elif not steady and own_locustfile:
        pass  # the user's locustfile knows the routes; warm-up runs it too
    elif not steady:
        raise UsageError(
            "drainwatch does not know which requests your service serves",
            hint='name them: --endpoint "GET /items" (repeatable), or [[endpoints]] in drainwatch.toml',
        )
    if steady and not any(r.weight for r in steady):
        raise UsageError("every steady endpoint has weight 0", hint="give at least one endpoint a weight above 0")
    if not demo and steady:
        chaos["disconnect"] = chaos["disconnect"] or steady[0]
        if not {"DRAINWATCH_DISCONNECT_AFTER_MS", "DRAINWATCH_DISCONNECT_AFTER_CHUNKS"} & env.keys():
            # an ordinary endpoint may answer in a millisecond: hang up before the first byte
            env["DRAINWATCH_DISCONNECT_AFTER_MS"] = "0"
        if "DRAINWATCH_TIMEOUT_CLIENT_MS" in env:  # a client-side deadline fits any endpoint
            chaos["timeout"] = chaos["timeout"] or steady[0]
    return Traffic(tuple(steady), chaos, env).with_headers(headers or {})


def _steady_from(text: str) -> list[Request]:
    text = text.strip()
    if not text.startswith("["):
        return [parse_request(text)]
    try:
        items = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(
            f"DRAINWATCH_STEADY {text!r} is not a JSON list", hint="unset it, or use [[endpoints]]"
        ) from exc
    return [parse_request(json.dumps(item), what="[[endpoints]] entry") for item in items]


# The scenarios' numeric knobs (drainwatch.scenarios.chaos reads them with int() and float()):
# name → (read as, smallest allowed, the key that sets it in drainwatch.toml)
_SETTINGS = {
    "DRAINWATCH_DISCONNECT_AFTER_MS": (float, 0.0, "[chaos.disconnect] after_ms"),
    "DRAINWATCH_DISCONNECT_AFTER_CHUNKS": (int, 0, "[chaos.disconnect] after_chunks"),
    "DRAINWATCH_TIMEOUT_CLIENT_MS": (float, 1e-9, "[chaos.timeout] client_timeout_ms"),
    "DRAINWATCH_REQUEST_TIMEOUT": (float, 1e-9, "[chaos] client_timeout"),
}


def _check_settings(env: Mapping[str, str]) -> None:
    """Raise UsageError for a knob the scenarios could not read, before Locust is started with it."""
    for name, (kind, least, key) in _SETTINGS.items():
        text = str(env.get(name, "")).strip()
        if not text:
            continue
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < least:
            what = (
                "a whole number of 0 or more"
                if kind is int
                else "a number above 0"
                if least
                else "a number of 0 or more"
            )
            raise UsageError(f"{key} {text!r} is not {what}", hint=f"set {key} (or {name}) to {what}")
    for chaos in ("TIMEOUT", "ERROR"):
        name = f"DRAINWATCH_{chaos}_EXPECT"
        codes = [code.strip() for code in str(env.get(name, "")).split(",") if code.strip()]
        if not all(code.isascii() and code.isdigit() and 100 <= int(code) <= 599 for code in codes):
            raise UsageError(
                f"[chaos.{chaos.lower()}] expect {env[name]!r} is not a list of HTTP statuses",
                hint="write it like expect = [500, 502]",
            )
