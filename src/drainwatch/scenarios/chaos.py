"""``ChaosUser``: a Locust user that delivers chaos as a property of the request.

Every request carries ``X-Request-ID``, ``X-Drainwatch-Scenario`` and ``X-Drainwatch-Client``
headers (plus the endpoint's own headers, e.g. ``Authorization``) and is named
``"<scenario> <METHOD> <path>"`` in Locust's stats, so failures and leaked connections can
be traced back to the kind of traffic that caused them.

Each helper reports one of four outcomes (the ``outcome`` column of the request log):

    ok        a steady request answered (< 400)
    chaos     the chaos was delivered: the client hung up, its deadline fired, or the
              handler error that was asked for came back. A Locust success.
    no_chaos  the chaos did not happen (the response ended before the hang-up, the answer
              came before the client deadline, a 2xx where an error was asked for). A Locust
              failure whose message starts with ``no chaos:``.
    failed    what a user of the service would call a failure: an unexpected status
              (``HTTP 404 before the hang-up``, ``HTTP 404: <body>``), connection refused or
              reset, a plain request that timed out. A Locust failure.

No I/O or HTTP error ever escapes into Locust as an exception.

Kinds
    steady      an ordinary request through Locust's ``FastHttpUser`` client (geventhttpclient:
                keep-alive, redirects followed, TLS certificates verified; its connect and
                network timeouts are ``DRAINWATCH_REQUEST_TIMEOUT``).
    disconnect  a plain socket (cooperative under Locust's gevent): the whole request is
                sent, then the client reads until the hang-up and closes the socket. The
                hang-up comes ``after_ms`` after the request was sent -- before the first
                byte on a slow endpoint (``0``: right after sending), mid-body on one that is
                already answering -- or, with ``after_chunks``, once that many chunks of a
                streamed body have arrived (``DISCONNECT_REQUEST_TIMEOUT`` seconds at most).
    timeout     with ``DRAINWATCH_TIMEOUT_CLIENT_MS``: a client-side deadline, the same plain
                socket closed that many ms after the request was sent (Locust's own client
                timeout is such a disconnect too). Without it: a server-side deadline, the
                statuses in ``DRAINWATCH_TIMEOUT_EXPECT`` count as delivered.
    error       a request whose handler should fail: the statuses in
                ``DRAINWATCH_ERROR_EXPECT`` count as delivered (through the client, as steady).

Everything is set from ``DRAINWATCH_*`` environment variables, with defaults for the
bundled demo service. An endpoint is ``"METHOD /path"`` or a JSON object
``{"method", "path", "headers", "json"}``; ``DRAINWATCH_STEADY`` may also be a JSON list
of such objects with a ``weight`` each (``drainwatch run --config`` writes these):

    DRAINWATCH_MIX                 steady=4,disconnect=2,timeout=2,error=1 (mixed.py)
    DRAINWATCH_STEADY              GET /items
    DRAINWATCH_DISCONNECT          POST /chat            (a streaming or slow request)
    DRAINWATCH_DISCONNECT_AFTER_MS 150                   (the client hangs up this long after
                                                          sending; 0: right after sending)
    DRAINWATCH_DISCONNECT_AFTER_CHUNKS                   (or after this many chunks of a stream)
    DRAINWATCH_TIMEOUT             GET /report?deadline_ms=300&work_ms=1000
    DRAINWATCH_TIMEOUT_EXPECT      504,200               (server-side deadline)
    DRAINWATCH_TIMEOUT_CLIENT_MS                         (set: a client-side deadline instead)
    DRAINWATCH_ERROR               POST /orders?fail=1
    DRAINWATCH_ERROR_EXPECT        502,500
    DRAINWATCH_REQUEST_TIMEOUT     5                     (seconds, any plain request: the connect
                                                          timeout and the longest wait for the
                                                          next bytes; also the longest wait for
                                                          chunks)
    DRAINWATCH_REQUESTS_CSV                              (a path prefix: the request log)

The request log: with ``DRAINWATCH_REQUESTS_CSV=/run/dir/requests`` each Locust process
appends every request the helpers make to ``/run/dir/requests-<pid>.csv``, columns
``start,end,scenario,method,name,status,outcome,request_id,detail`` (unix seconds with
3 decimals; ``name`` is the path without its query; ``status`` empty when no status line
arrived; ``request_id`` the ``X-Request-ID`` sent). Rows are buffered and flushed at least
once a second and when Locust stops the test or quits. A request cut short because Locust
stopped its user is logged ``failed`` with the detail ``cut: ...`` (Locust counts nothing).

The client: ``ChaosUser`` is a ``FastHttpUser`` (it was an ``HttpUser``, python-requests, whose
CPU cost made the load generator the bottleneck at a few hundred req/s). Your own tasks may call
``self.client`` directly: it is Locust's ``FastHttpSession`` (``get``/``post``/``request`` with
``name=``, ``catch_response=``, ``headers=``, ``json=``), not a requests ``Session``: it takes no
per-call ``timeout=``, ``verify=`` or ``cookies=``, and ignores ``HTTP(S)_PROXY``. Set
``insecure = True`` on your subclass to skip TLS verification (the plain sockets follow it).
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import random
import socket
import ssl
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
from geventhttpclient.response import HTTPConnectionClosed
from locust import FastHttpUser, between, constant_throughput, events
from locust.exception import CatchResponseError

KINDS = ("steady", "disconnect", "timeout", "error")
CLIENT_ID = f"locust-{os.getpid()}"  # one per Locust process: shows which worker sent what
OUTCOMES = ("ok", "chaos", "no_chaos", "failed")
REQUEST_LOG_FIELDS = ("start", "end", "scenario", "method", "name", "status", "outcome", "request_id", "detail")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DRAINWATCH_{name}", default)


def _optional_float(name: str) -> float | None:
    text = _env(name, "").strip()
    return float(text) if text else None


Endpoint = dict[str, Any]


def _parse_endpoint(text: str) -> Endpoint:
    text = text.strip()
    if text.startswith("{"):
        spec = json.loads(text)
        return {
            "method": str(spec.get("method", "GET")).upper(),
            "path": spec["path"],
            "headers": spec.get("headers") or {},
            "json": spec.get("json"),
            "weight": int(spec.get("weight", 1)),
        }
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


def _short(text: object, limit: int = 200) -> str:
    """One line, at most ``limit`` characters: for failure messages and the request log."""
    return " ".join(str(text).split())[:limit]


# --- the request log -------------------------------------------------------------------


class RequestLog:
    """Every request the helpers make, appended to ``<prefix>-<pid>.csv`` (one file per process).

    Writes are buffered (no fsync): a flush at most a second after a row was written, from the
    writer itself or from a background greenlet, and on Locust's ``test_stop`` and ``quitting``.
    A log that cannot be written warns once on stderr and is switched off: it never fails a request.
    """

    FLUSH_EVERY = 1.0

    def __init__(self, prefix: str | None) -> None:
        self.prefix = prefix or None
        self.path: str | None = None
        self._file: Any = None
        self._writer: Any = None
        self._pid: int | None = None
        self._dirty = False
        self._flushed_at = 0.0
        self._flusher: Any = None

    def write(self, row: tuple[object, ...]) -> None:
        if self.prefix is None:
            return
        try:
            if self._file is None or self._pid != os.getpid():  # first row, or a forked child
                self._open()
            self._writer.writerow(row)
            self._dirty = True
            if time.monotonic() - self._flushed_at >= self.FLUSH_EVERY:
                self.flush()
        except (OSError, ValueError) as exc:
            self._give_up(exc)

    def flush(self, *_args: Any, **_kwargs: Any) -> None:
        if self._file is None or self._pid != os.getpid():
            return
        try:
            if self._dirty:
                self._file.flush()
                self._dirty = False
            self._flushed_at = time.monotonic()
        except (OSError, ValueError) as exc:
            self._give_up(exc)

    def _open(self) -> None:
        assert self.prefix is not None
        self._pid = os.getpid()
        self.path = f"{self.prefix}-{self._pid}.csv"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "a", newline="", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if self._file.tell() == 0:
            self._writer.writerow(REQUEST_LOG_FIELDS)
        self._flushed_at = time.monotonic()
        self._flusher = gevent.spawn(self._flush_every_second)

    def _flush_every_second(self) -> None:
        while self._file is not None:
            gevent.sleep(self.FLUSH_EVERY)
            self.flush()

    def _give_up(self, exc: BaseException) -> None:
        print(
            f"drainwatch: cannot write the request log {self.path or self.prefix}: {exc}; it is switched off",
            file=sys.stderr,
        )
        self.prefix, self._file, self._writer = None, None, None


REQUEST_LOG = RequestLog(_env("REQUESTS_CSV", ""))
events.test_stop.add_listener(REQUEST_LOG.flush)  # type: ignore[no-untyped-call]  # Locust's EventHook is untyped
events.quitting.add_listener(REQUEST_LOG.flush)  # type: ignore[no-untyped-call]
atexit.register(REQUEST_LOG.flush)


# --- a plain HTTP/1.1 exchange that can hang up at any moment ------------------------------


class BadResponse(Exception):
    """The server's bytes were not an HTTP/1.1 response (or the request could not be written)."""


class _ResponseReader:
    """Incremental framing of one HTTP/1.1 response: just enough to see its status, count the
    chunks of its body and know when it has ended."""

    MAX_HEAD = 1 << 16

    def __init__(self, no_body: bool) -> None:
        self.no_body = no_body  # a HEAD request: the response has no body whatever it says
        self.buf = bytearray()
        self.state = "head"
        self.status: int | None = None
        self.chunks = 0  # HTTP chunks of a chunked body, else reads that brought body bytes
        self.complete = False
        self._left = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        while not self.complete and self._step():
            pass

    def eof(self) -> None:
        if self.state == "eof":
            self.complete = True

    def _line(self) -> bytes | None:
        end = self.buf.find(b"\r\n")
        if end < 0:
            if len(self.buf) > self.MAX_HEAD:
                raise BadResponse("a response line over 64 KiB")
            return None
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def _step(self) -> bool:
        if self.state == "head":
            return self._head()
        if self.state == "length":
            if not self.buf:
                return False
            take = min(len(self.buf), self._left)
            del self.buf[:take]
            self._left -= take
            self.chunks += 1
            self.complete = self._left == 0
            return True
        if self.state == "eof":
            if self.buf:
                self.chunks += 1
                self.buf.clear()
            return False
        if self.state == "size":
            line = self._line()
            if line is None:
                return False
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadResponse(f"a bad chunk size line {line[:40]!r}") from None
            self.state, self._left = ("trailer", 0) if size == 0 else ("data", size)
            return True
        if self.state == "data":
            if not self.buf:
                return False
            take = min(len(self.buf), self._left)
            del self.buf[:take]
            self._left -= take
            if self._left == 0:
                self.chunks += 1
                self.state = "data-end"
            return True
        if self.state == "data-end":
            line = self._line()
            if line is None:
                return False
            self.state = "size"
            return True
        if self.state == "trailer":
            line = self._line()
            if line is None:
                return False
            self.complete = line == b""
            return True
        return False

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > self.MAX_HEAD:
                raise BadResponse("a response head over 64 KiB")
            return False
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise BadResponse(f"not an HTTP response: {_short(lines[0], 60)!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return True  # an interim response (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if self.no_body or status in (101, 204, 304):
            self.complete = True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = "size"
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise BadResponse(f"a bad Content-Length {headers['content-length'][:20]!r}") from None
            self.state = "length"
            self.complete = self._left == 0
        else:
            self.state = "eof"  # the body ends when the server closes the connection
        return True


@dataclass
class Exchange:
    """What one plain-socket request saw. Times are ms since the request was fully sent."""

    url: str = ""
    sent: bool = False
    status: int | None = None
    head_ms: float | None = None  # the status line and headers arrived
    chunks: int = 0
    received: int = 0  # bytes, head included
    ended_ms: float | None = None  # the response was complete
    closed_ms: float | None = None  # the server closed the connection before the response ended
    hung_up_ms: float | None = None  # the client closed the socket (hang-up, deadline)
    error: str | None = None  # connection refused, reset, not HTTP...
    elapsed_ms: float = 0.0  # from the start (connect) to the socket's close


def _target(host: str, path: str) -> tuple[str, str, int, str, str]:
    """(scheme, hostname, port, Host header, request target) for ``path`` on Locust's ``host``."""
    url = (
        path
        if path.startswith(("http://", "https://"))
        else host.rstrip("/") + ("" if path.startswith("/") else "/") + path
    )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadResponse(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, parts.netloc.rpartition("@")[2], target


def _request_bytes(method: str, host_header: str, target: str, headers: dict[str, str], body: Any) -> bytes:
    """The bytes of the request: later headers replace earlier ones whatever their case."""
    merged: dict[str, tuple[str, str]] = {}
    defaults = {"Host": host_header, "User-Agent": "drainwatch", "Accept": "*/*", "Accept-Encoding": "identity"}
    for key, value in [*defaults.items(), *headers.items()]:
        merged[str(key).lower()] = (str(key), str(value))
    payload = b""
    if body is not None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        merged.setdefault("content-type", ("Content-Type", "application/json"))
    if payload or method in ("POST", "PUT", "PATCH"):
        merged["content-length"] = ("Content-Length", str(len(payload)))
    for key, value in merged.values():
        if not key.strip() or any(c in key + value for c in "\r\n"):
            raise BadResponse(f"the header {key[:40]!r} cannot be sent (empty name or a line break)")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in merged.values()) + "\r\n"
    return head.encode("latin-1", errors="replace") + payload


def _since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _body_head(resp: Any) -> str:
    """The first 200 bytes of a client response's body, decoded (for failure messages)."""
    head = (resp.content or b"")[:200]
    charset = "utf-8"
    for part in str((resp.headers or {}).get("content-type", "")).split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"' ")
    try:
        return head.decode(charset, errors="replace")
    except LookupError:
        return head.decode("utf-8", errors="replace")


# --- the client's exceptions, in words -----------------------------------------------------------


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 12:
        cur = todo.pop(0)
        if cur in seen:
            continue
        seen.append(cur)
        linked = (cur.__cause__, cur.__context__, getattr(cur, "reason", None), getattr(cur, "original", None))
        todo += [e for e in linked if isinstance(e, BaseException)]  # original: geventhttpclient's RetriesExceeded
        todo += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
    return seen


def _while_connecting(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while geventhttpclient was opening the connection (TCP or TLS)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("_create_socket", "_connect_socket"):
            return True
        tb = tb.tb_next
    return False


def describe_error(exc: BaseException, timeout_s: float, status: int | None = None) -> str:
    """A short reason for a failed plain request (connection refused, reset, timed out...);
    ``status``: the status line had arrived, the body then broke off."""
    chain = _causes(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    during = f" mid-body (HTTP {status})" if status else ""
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return f"connection reset by the server{during}"
    timeouts = [e for e in chain if isinstance(e, TimeoutError | gevent.Timeout)]
    if timeouts:
        if any(_while_connecting(e) for e in timeouts):
            return f"connect timed out after {timeout_s:g} s"
        return f"no answer within {timeout_s:g} s{during}"
    if status:
        return _short(f"the response broke off mid-body (HTTP {status}): {type(exc).__name__}: {exc}", 160)
    if any(isinstance(e, HTTPConnectionClosed) for e in chain):
        return "the server closed the connection without a response"
    return _short(f"{type(exc).__name__}: {exc}", 160)


# --- the user ----------------------------------------------------------------------------------


def _pace() -> Any:
    """Each user's wait: a stated rate (``--rate``, shared by the users) or as fast as it goes."""
    per_user = _optional_float("RATE_PER_USER")
    return constant_throughput(per_user) if per_user else between(0.0, 0.1)


class ChaosUser(FastHttpUser):
    """Base class: subclass it and call the helpers from your tasks."""

    abstract = True
    wait_time = _pace()
    insecure = False  # verify TLS certificates (FastHttpUser's default is not to), as requests did
    # One connection per user (a user sends one request at a time). It also bounds geventhttpclient's
    # resend of an idempotent request whose connection closed without a response: pool size + 1 times.
    concurrency = 1

    steady_endpoints = _endpoints("STEADY", "GET /items")
    disconnect_endpoint = _endpoints("DISCONNECT", "POST /chat")[0]
    disconnect_after_ms = float(_env("DISCONNECT_AFTER_MS", "150"))
    disconnect_after_chunks = int(_env("DISCONNECT_AFTER_CHUNKS", "0") or 0)
    timeout_endpoint = _endpoints("TIMEOUT", "GET /report?deadline_ms=300&work_ms=1000")[0]
    timeout_expect = _statuses("TIMEOUT_EXPECT", "504,200")
    timeout_client_ms = _optional_float("TIMEOUT_CLIENT_MS")  # None: the server's deadline
    error_endpoint = _endpoints("ERROR", "POST /orders?fail=1")[0]
    error_expect = _statuses("ERROR_EXPECT", "502,500")
    request_timeout = float(_env("REQUEST_TIMEOUT", "5"))

    _tls: ssl.SSLContext | None = None
    _ANY_STATUS = frozenset(range(100, 600))  # the helpers judge statuses themselves

    def __init__(self, environment: Any) -> None:
        # the client's timeouts are the helpers' (read here: a subclass may set request_timeout)
        self.connection_timeout = self.network_timeout = self.request_timeout
        super().__init__(environment)

    # -- shared plumbing

    @staticmethod
    def endpoint(method: str, path: str, **extra: Any) -> Endpoint:
        """An endpoint for the helpers below: ``self.steady(self.endpoint("GET", "/items"))``."""
        return {"method": method.upper(), "path": path, "headers": {}, "json": None, **extra}

    @staticmethod
    def _name(scenario: str, endpoint: Endpoint) -> str:
        return f"{scenario} {endpoint['method']} {endpoint['path'].split('?')[0]}"

    @staticmethod
    def _headers(scenario: str, endpoint: Endpoint) -> tuple[str, dict[str, str]]:
        rid = uuid.uuid4().hex[:16]
        headers = {"X-Request-ID": rid, "X-Drainwatch-Scenario": scenario, "X-Drainwatch-Client": CLIENT_ID}
        for key, value in (endpoint.get("headers") or {}).items():  # the endpoint's own win, whatever their case
            for same in [k for k in headers if k.lower() == str(key).lower()]:
                del headers[same]
            headers[str(key)] = str(value)
        sent = next(v for k, v in headers.items() if k.lower() == "x-request-id")
        return sent, headers

    @staticmethod
    def _log(
        scenario: str,
        endpoint: Endpoint,
        start: float,
        end: float,
        status: int | None,
        outcome: str,
        request_id: str,
        detail: str,
    ) -> None:
        REQUEST_LOG.write(
            (
                f"{start:.3f}",
                f"{end:.3f}",
                scenario,
                endpoint["method"],
                endpoint["path"].split("?")[0],
                "" if status is None else status,
                outcome,
                request_id,
                _short(detail),
            )
        )

    def _plain(self, scenario: str, endpoint: Endpoint, judge: Any) -> None:
        """One request through Locust's client; ``judge(status, body_head) -> (outcome, detail)``
        decides a response with a status line. Connection errors and timeouts are failures."""
        rid, headers = self._headers(scenario, endpoint)
        start, status, outcome, detail = time.time(), None, "failed", "cut: Locust stopped the user mid-request"
        try:
            try:
                resp = self._send(endpoint, headers, scenario, rid)
            except Exception as exc:  # a request the client refuses to build or send: nothing reported yet
                outcome, detail = "failed", _short(f"{type(exc).__name__}: {exc}", 160)
                self._fire(endpoint, scenario, rid, start, (time.time() - start) * 1000, 0, detail, endpoint["path"])
                return
            with resp:
                status = resp.status_code or None
                error = getattr(resp, "error", None) or resp.request_meta.get("exception")
                if error is not None or status is None:
                    outcome = "failed"
                    detail = describe_error(error or OSError("no response"), self.request_timeout, status)
                else:
                    outcome, detail = judge(status, _short(_body_head(resp), 120) if status >= 400 else "")
                if outcome in ("ok", "chaos"):
                    resp.success()
                else:
                    resp.failure(detail)
        finally:
            self._log(scenario, endpoint, start, time.time(), status, outcome, rid, detail)

    def _send(self, endpoint: Endpoint, headers: dict[str, str], scenario: str, rid: str) -> Any:
        """The request through ``self.client`` (a ``FastHttpSession``), its response in a
        ``catch_response`` context. Every status is a response here, its body read (the client
        would otherwise turn a 4xx/5xx into an error and drop the body)."""
        body = None
        if endpoint.get("json") is not None:  # serialized as requests did, so the bytes stay the same
            body = json.dumps(endpoint["json"], allow_nan=False).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers = {**headers, "Content-Type": "application/json"}
        agent = self.client.client
        valid = agent.valid_response_codes
        agent.valid_response_codes = self._ANY_STATUS  # type: ignore[misc]  # for this request only (the user's own calls keep Locust's)
        try:
            return self.client.request(
                endpoint["method"],
                endpoint["path"],
                name=self._name(scenario, endpoint),
                data=body,  # type: ignore[arg-type]  # bytes are sent as they are; the stub says str
                headers=headers,
                catch_response=True,
                context={"scenario": scenario, "request_id": rid},
            )
        finally:
            agent.valid_response_codes = valid  # type: ignore[misc]

    def _fire(
        self,
        endpoint: Endpoint,
        scenario: str,
        rid: str,
        start: float,
        elapsed_ms: float,
        length: int,
        failure: str | None,
        url: str,
    ) -> None:
        """Report a request Locust's client did not make to Locust's stats."""
        self.environment.events.request.fire(
            request_type=endpoint["method"],
            name=self._name(scenario, endpoint),
            response_time=elapsed_ms,
            response_length=length,
            response=None,
            exception=None if failure is None else CatchResponseError(failure),
            context={**self.context(), "scenario": scenario, "request_id": rid},
            start_time=start,
            url=url,
        )

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            ctx = ssl.create_default_context()
            if self.insecure:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            self._tls = ctx
        return self._tls

    def exchange(
        self, endpoint: Endpoint, headers: dict[str, str], after_ms: float | None, after_chunks: int = 0
    ) -> Exchange:
        """Send ``endpoint`` on a fresh socket, read the response, and close the socket
        ``after_ms`` after the request was sent, once ``after_chunks`` chunks have arrived,
        when a status >= 400 arrives, or when the response ends -- whichever comes first.
        With ``after_ms`` None the wait is ``request_timeout``. Never raises an I/O error."""
        seen = Exchange()
        t0 = time.perf_counter()
        sock: socket.socket | None = None
        phase = "connect"
        sent_at = t0
        try:
            scheme, hostname, port, host_header, target = _target(self.host or "", endpoint["path"])
            seen.url = f"{scheme}://{host_header}{target}"
            payload = _request_bytes(endpoint["method"], host_header, target, headers, endpoint.get("json"))
            sock = socket.create_connection((hostname, port), timeout=self.request_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=hostname)
            phase = "send"
            sock.sendall(payload)
            sent_at, seen.sent, phase = time.perf_counter(), True, "read"
            deadline = sent_at + (self.request_timeout if after_ms is None else max(after_ms, 0.0) / 1000)
            reader = _ResponseReader(no_body=endpoint["method"] == "HEAD")
            while (left := deadline - time.perf_counter()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    break  # the moment to hang up
                if not data:
                    reader.eof()
                    if reader.complete:
                        seen.ended_ms = _since(sent_at)
                    else:
                        seen.closed_ms = _since(sent_at)
                    break
                seen.received += len(data)
                reader.feed(data)
                seen.status, seen.chunks = reader.status, reader.chunks
                if reader.status is not None and seen.head_ms is None:
                    seen.head_ms = _since(sent_at)
                if reader.complete:
                    seen.ended_ms = _since(sent_at)
                    break
                if (reader.status or 0) >= 400 or (after_chunks and reader.chunks >= after_chunks):
                    break
        except ConnectionRefusedError:
            seen.error = "connection refused"
        except ConnectionResetError:
            seen.error = (
                f"connection reset by the server after {_since(sent_at):.0f} ms"
                if seen.sent
                else "connection reset by the server"
            )
        except BrokenPipeError:
            seen.error = "the server closed the connection while the request was being sent"
        except TimeoutError:
            seen.error = f"{phase} timed out after {self.request_timeout:g} s"
        except ssl.SSLError as exc:
            seen.error = _short(f"TLS: {exc}", 160)
        except OSError as exc:
            seen.error = _short(f"{type(exc).__name__} while trying to {phase}: {exc}", 160)
        except BadResponse as exc:
            seen.error = _short(exc, 160)
        finally:
            if sock is not None:
                try:
                    sock.close()  # the hang-up: the server sees the client go
                except OSError:
                    pass
            seen.elapsed_ms = _since(t0)
        if seen.error is None and seen.ended_ms is None and seen.closed_ms is None:
            seen.hung_up_ms = _since(sent_at)
        return seen

    def _raw(self, scenario: str, endpoint: Endpoint, after_ms: float | None, after_chunks: int, judge: Any) -> None:
        """A plain-socket request judged by ``judge(Exchange) -> (outcome, detail)``, reported to
        Locust's stats and the request log."""
        rid, headers = self._headers(scenario, endpoint)
        start, seen, outcome, detail = time.time(), None, "failed", "cut: Locust stopped the user mid-request"
        try:
            seen = self.exchange(endpoint, headers, after_ms, after_chunks)
            outcome, detail = ("failed", seen.error) if seen.error else judge(seen)
            failure = None if outcome in ("ok", "chaos") else detail
            self._fire(
                endpoint, scenario, rid, start, seen.elapsed_ms, seen.received, failure, seen.url or endpoint["path"]
            )
        finally:
            end = start + seen.elapsed_ms / 1000 if seen is not None else time.time()
            self._log(scenario, endpoint, start, end, seen.status if seen else None, outcome, rid, detail)

    # -- the kinds

    def steady(self, endpoint: Endpoint | None = None) -> None:
        """An ordinary request that should succeed."""
        if endpoint is None:
            weights = [e["weight"] for e in self.steady_endpoints]
            endpoint = random.choices(self.steady_endpoints, weights)[0]

        def judge(status: int, body: str) -> tuple[str, str]:
            return ("failed", f"HTTP {status}: {body}") if status >= 400 else ("ok", f"HTTP {status}")

        self._plain("steady", endpoint, judge)

    def disconnect(
        self, endpoint: Endpoint | None = None, after_ms: float | None = None, after_chunks: int | None = None
    ) -> None:
        """Send a request and hang up ``after_ms`` after it was sent (0: at once), or after
        ``after_chunks`` chunks of its streamed body -- before the response has ended."""
        chunks = self.disconnect_after_chunks if after_chunks is None else after_chunks
        after = self.disconnect_after_ms if after_ms is None else after_ms
        wanted = f"after {chunks} chunk(s)" if chunks else f"at {after:.0f} ms"

        def judge(seen: Exchange) -> tuple[str, str]:
            if seen.status is not None and seen.status >= 400:
                return "failed", f"HTTP {seen.status} before the hang-up"
            if seen.ended_ms is not None:
                got = f" and {seen.chunks} chunk(s)" if chunks else ""
                return (
                    "no_chaos",
                    f"no chaos: the response ended after {seen.ended_ms:.0f} ms{got}, before the hang-up {wanted}",
                )
            if seen.closed_ms is not None:
                return (
                    "failed",
                    f"the server closed the connection after {seen.closed_ms:.0f} ms, before the hang-up {wanted}",
                )
            if seen.head_ms is None:
                return "chaos", f"hung up before the first byte, {seen.hung_up_ms:.0f} ms after sending"
            if chunks and seen.chunks >= chunks:
                return (
                    "chaos",
                    f"hung up mid-stream after {seen.chunks} chunk(s), {seen.hung_up_ms:.0f} ms (HTTP {seen.status})",
                )
            if chunks:
                return "chaos", (
                    f"hung up after the {self.request_timeout:g} s wait with {seen.chunks} of {chunks} "
                    f"chunk(s) (HTTP {seen.status})"
                )
            return (
                "chaos",
                f"hung up mid-body, {seen.hung_up_ms:.0f} ms after sending (HTTP {seen.status}, {seen.chunks} chunk(s) of body)",
            )

        self._raw("disconnect", endpoint or self.disconnect_endpoint, None if chunks else after, chunks, judge)

    def timeout(self, endpoint: Endpoint | None = None, client_timeout_ms: float | None = None) -> None:
        """A request whose deadline fires: the client's (``client_timeout_ms``, or
        ``DRAINWATCH_TIMEOUT_CLIENT_MS``) when set, else the server's."""
        endpoint = endpoint or self.timeout_endpoint
        client_ms = self.timeout_client_ms if client_timeout_ms is None else client_timeout_ms
        if client_ms is None:
            self._plain("timeout", endpoint, self._expecting(self.timeout_expect))
            return

        def judge(seen: Exchange) -> tuple[str, str]:
            if seen.status is not None and seen.status >= 400:
                return "failed", f"HTTP {seen.status} before the client deadline of {client_ms:.0f} ms"
            if seen.ended_ms is not None:
                return (
                    "no_chaos",
                    f"no chaos: answered in {seen.ended_ms:.0f} ms, before the client deadline of {client_ms:.0f} ms",
                )
            if seen.closed_ms is not None:
                return (
                    "failed",
                    f"the server closed the connection after {seen.closed_ms:.0f} ms, before the client deadline",
                )
            where = "before the first byte" if seen.head_ms is None else f"mid-body (HTTP {seen.status})"
            return "chaos", f"the deadline fired after {seen.hung_up_ms:.0f} ms, {where}"

        self._raw("timeout", endpoint, client_ms, 0, judge)

    def error(self, endpoint: Endpoint | None = None) -> None:
        """A request whose handler raises mid-transaction."""
        self._plain("error", endpoint or self.error_endpoint, self._expecting(self.error_expect))

    @staticmethod
    def _expecting(expected: set[int]) -> Any:
        def judge(status: int, body: str) -> tuple[str, str]:
            if status in expected:
                return "chaos", f"HTTP {status}"
            if 200 <= status < 300:
                return "no_chaos", f"no chaos: HTTP {status}, expected one of {sorted(expected)}"
            return "failed", f"HTTP {status}, expected one of {sorted(expected)}"

        return judge
