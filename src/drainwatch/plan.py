"""The run plan: one frozen object, built and validated at the edge before anything starts."""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from drainwatch.errors import UsageError
from drainwatch.traffic import Traffic, request_path, traffic_from
from drainwatch.units import parse_duration

CHAOS_KINDS = ("steady", "disconnect", "timeout", "error")
DEFAULT_MIX = {"steady": 4, "disconnect": 2, "timeout": 2, "error": 1}
VARIANTS = ("leaky", "fixed")


def parse_mix(text: str) -> dict[str, int]:
    """``steady=4,disconnect=2`` → weights; unknown kinds are a UsageError."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in CHAOS_KINDS:
            raise UsageError(
                f"unknown chaos kind {kind!r} in --mix",
                hint=f"use some of {', '.join(CHAOS_KINDS)}, like steady=4,disconnect=2",
            )
        try:
            mix[kind] = int(weight or "1")
        except ValueError as exc:
            raise UsageError(
                f"weight {weight!r} of {kind} is not a whole number", hint="write it like error=1"
            ) from exc
        if mix[kind] < 0:
            raise UsageError(f"weight of {kind} is negative", hint="use 0 to leave a kind out")
    if not any(mix.values()):
        raise UsageError("--mix gives no traffic at all", hint="give at least one kind a weight above 0")
    return mix


def parse_delays(text: str) -> tuple[float, ...]:
    """``0,100,300ms,1s`` → hang-up delays in milliseconds (a bare number is milliseconds)."""
    delays = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            delays.append(float(part))
        except ValueError:
            delays.append(parse_duration(part, name="--sweep-disconnect delay") * 1000)
        if not math.isfinite(delays[-1]):
            raise UsageError(
                f"--sweep-disconnect delay {part!r} is not a delay", hint="write delays like 0,100,300,600"
            )
        if delays[-1] < 0:
            raise UsageError(f"--sweep-disconnect delay {part!r} is negative", hint="write delays like 0,100,300,600")
    if not delays:
        raise UsageError("--sweep-disconnect names no delay", hint="write delays like 0,100,300,600")
    return tuple(delays)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (URL and key=value forms)."""
    dsn = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn, flags=re.I)


_FAULT = re.compile(r"^(?P<kind>[a-z-]+)@(?P<at>[^+]+)(?:\+(?P<length>.+))?$")
FAULT_KINDS = ("pg-restart", "terminate-backends", "pause-target", "pooler-kill", "pg-pause")
POOLER_FAULTS = ("pooler-kill", "pg-pause")  # through PgBouncer's admin console


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float  # seconds after the load phase starts
    length: float = 0.0  # pause-target and pg-pause only

    def __str__(self) -> str:
        return f"{self.kind}@{self.at:g}s" + (f"+{self.length:g}s" if self.length else "")


def parse_fault(text: str) -> Fault:
    """``pause-target@10s+3s`` → Fault; UsageError naming the form otherwise."""
    found = _FAULT.match(text.strip())
    if not found or found["kind"] not in FAULT_KINDS:
        raise UsageError(
            f"--fault {text!r} is not a fault",
            hint=f"write KIND@TIME, KIND one of {', '.join(FAULT_KINDS)}, like pg-restart@20s",
        )
    at = parse_duration(found["at"], name=f"--fault {text!r} time")
    length = parse_duration(found["length"], name=f"--fault {text!r} length") if found["length"] else 0.0
    if found["kind"] in ("pause-target", "pg-pause") and not length:
        length = 5.0
    return Fault(found["kind"], at, length)


def check_faults(
    faults: tuple[Fault, ...],
    *,
    duration: float,
    embedded: bool,
    own_target: bool,
    docker_postgres: str | None = None,
    docker_target: str | None = None,
    pooler: bool = False,
    pooler_mode: str | None = None,
    external_pooler: bool = False,
) -> None:
    """Raise UsageError for a fault this run cannot inject."""
    for fault in faults:
        if fault.kind in POOLER_FAULTS and external_pooler:
            raise UsageError(
                f"--fault {fault.kind} goes through the admin console of a PgBouncer drainwatch starts, and "
                "drainwatch does not inject faults into one you run (--pgbouncer): its other clients would suffer them",
                hint="use --serve with --via-pgbouncer transaction instead of --pgbouncer",
            )
        if fault.kind in POOLER_FAULTS and not pooler:
            raise UsageError(
                f"--fault {fault.kind} goes through PgBouncer's admin console, and there is no PgBouncer",
                hint="add --via-pgbouncer transaction" + (" (or session)" if fault.kind == "pooler-kill" else ""),
            )
        if fault.kind == "pg-pause" and pooler_mode != "transaction":
            raise UsageError(
                f"--fault pg-pause needs PgBouncer in transaction mode: in {pooler_mode} mode PAUSE waits until the "
                "service's pool gives back every server connection, and a pool holding its sessions never does",
                hint="use --via-pgbouncer transaction (the service without named prepared statements: asyncpg "
                "statement_cache_size=0, psycopg prepare_threshold=None)",
            )
        if fault.at >= duration:
            raise UsageError(
                f"--fault {fault} comes after the load ends ({duration:g}s)", hint="give a time inside --duration"
            )
        if fault.kind == "pg-restart" and not (embedded or docker_postgres):
            raise UsageError(
                "--fault pg-restart needs the embedded PostgreSQL or --docker-postgres CONTAINER",
                hint="leave out --dsn, name the container, or use terminate-backends",
            )
        if fault.kind == "pause-target" and not (own_target or docker_target):
            raise UsageError(
                "--fault pause-target needs the demo service drainwatch starts or --docker-target CONTAINER",
                hint="leave out --target-url, or name the target's container",
            )


@dataclass(frozen=True)
class Match:
    """Which client backends belong to the target (every given field must match)."""

    application_name: str | None = None  # SQL LIKE pattern
    usename: str | None = None
    datname: str | None = None
    client_addr: str | None = None
    # A file holding the pid of the service's process (rewritten when it restarts): its
    # backends are those whose client port is one of that process tree's sockets.
    client_pid_file: str | None = None


Frozen = Mapping  # a read-only mapping: RunConfig wraps every dict it is given


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, built once at the edge (CLI > DRAINWATCH_* > file > defaults).

    Frozen all the way down: mappings are read-only views, sequences are tuples.
    """

    variant: str = "leaky"
    dsn: str | None = None
    target_url: str | None = None
    serve: str | None = None  # the user's service, started by drainwatch: a command with {port}
    setup: str | None = None  # run once before the served service starts (migrations)
    serve_env: Frozen[str, str] = field(default_factory=dict)
    serve_cwd: Path | None = None
    dev_mode: bool = False  # start the service with PYTHONDEVMODE=1: ResourceWarning and asyncio debug on
    instrument: bool = True  # record a served service's pools with drainwatch's bootstrap (--no-instrument: off)
    via_pgbouncer: str | None = None  # "session" or "transaction": a PgBouncer between the service and PostgreSQL
    pgbouncer: str | None = None  # the admin console of a PgBouncer the user runs, which the service goes through
    database_env: str = "DATABASE_URL"  # the variable that hands a served service its database
    no_restart: bool = False  # --isolate/--sweep against a service drainwatch cannot restart
    match: Match = field(default_factory=Match)
    users: int = 20
    spawn_rate: float = 20.0
    rate: float | None = None  # requests per second for the whole load (None: as fast as the users go)
    warmup: float = 10.0
    baseline: float = 5.0
    duration: float = 30.0
    settle: float = 20.0
    interval: float = 0.25
    mix: Frozen[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    locustfile: Path | None = None
    probe_path: str | None = None  # None: the demo's /health/db, or the first steady endpoint
    probe_headers: Frozen[str, str] = field(default_factory=dict)
    probe_count: int = 3
    probe_timeout: float = 5.0
    tolerance: int = 0
    out: Path = Path("reports")
    run_id: str = ""
    quiet: bool = False
    pool_limit: int | None = None
    pool_view: str | None = None  # path where an external target serves drainwatch.instrument's view
    workers: int = 0
    metrics_port: int | None = None
    prod_rps: float | None = None  # production figures for the forecast
    prod_shares: Frozen[str, float] = field(default_factory=dict)
    prod_pool: int | None = None
    prod_instances: int = 1  # service instances sharing production's database server
    prod_max_connections: int | None = None  # connections production's server gives its clients
    faults: tuple[Fault, ...] = ()
    isolate: bool = False  # each chaos kind in a cycle of its own
    docker_postgres: str | None = None  # compose container names for faults through the Docker SDK
    docker_target: str | None = None
    sweep_disconnect: tuple[float, ...] = ()  # hang-up delays (ms), one disconnect-only cycle each
    traffic: Traffic = field(default_factory=lambda: traffic_from({}, demo=True))  # what each kind sends
    config_file: str | None = None
    checkpoint_every: float = 600.0  # seconds between report checkpoints during a long load
    embedded_max_connections: int = 100  # a small server reproduces "too many clients" in seconds

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping) and not isinstance(value, MappingProxyType):
                object.__setattr__(self, f.name, MappingProxyType(dict(value)))

    @property
    def demo(self) -> bool:
        """True when the target is the bundled demo service (neither --serve nor --target-url)."""
        return not (self.serve or self.target_url)

    @property
    def run_dir(self) -> Path:
        return self.out / self.run_id

    def public_dict(self) -> dict[str, Any]:
        """The config as it may be written down: no password anywhere."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        if self.dsn:
            data["dsn"] = redact_dsn(self.dsn)
        if self.pgbouncer:
            data["pgbouncer"] = redact_dsn(self.pgbouncer)
        data["serve_env"] = {k: "***" if _secret(k) else redact_dsn(v) for k, v in self.serve_env.items()}
        data["probe_headers"] = {k: "***" if _secret(k) else v for k, v in self.probe_headers.items()}
        return data


def _secret(name: str) -> bool:
    return bool(re.search(r"pass|secret|token|auth|key|cookie", name, re.I))


def _plain(value: Any) -> Any:
    """JSON-ready: mappings → dict, sequences → list, paths and faults → str, Match → dict."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Match):
        return asdict(value)
    if isinstance(value, Traffic):
        return value.public()
    if isinstance(value, (Path, Fault)):
        return str(value)
    return value


MAX_USERS = 100_000  # what Locust workers on a handful of machines can hold
MAX_RUN_ID = 200  # a folder name, with room under the file system's 255 bytes


def validate(cfg: RunConfig) -> RunConfig:
    """Check everything a user can get wrong, before anything is started or written.

    Raises UsageError naming the fix.
    """
    _check_numbers(cfg)
    _check_service(cfg)
    _check_given_target(cfg)
    _check_load(cfg)
    return cfg


def _check_numbers(cfg: RunConfig) -> None:
    """The numbers and names: variant, users, workers, rates, limits, the run id."""
    if cfg.variant not in VARIANTS:
        raise UsageError(f"unknown variant {cfg.variant!r}", hint="use --variant leaky or --variant fixed")
    if not 1 <= cfg.users <= MAX_USERS:
        raise UsageError(
            f"--users must be between 1 and {MAX_USERS:,}, got {cfg.users:,}",
            hint="try --users 20; past a few thousand, add --workers",
        )
    if not 0 <= cfg.workers <= 64:
        raise UsageError(f"--workers must be between 0 and 64, got {cfg.workers}", hint="try --workers 2")
    if not 10 <= cfg.embedded_max_connections <= 10000:
        raise UsageError(
            f"--embedded-max-connections must be between 10 and 10000, got {cfg.embedded_max_connections}",
            hint="the default is 100, as PostgreSQL's",
        )
    if cfg.rate is not None and not (math.isfinite(cfg.rate) and cfg.rate > 0):
        raise UsageError(
            f"--rate must be a number of requests per second above 0, got {cfg.rate:g}", hint="e.g. --rate 40"
        )
    if not cfg.spawn_rate > 0 or not math.isfinite(cfg.spawn_rate):
        raise UsageError("--spawn-rate must be positive", hint="try --spawn-rate 20")
    if cfg.tolerance < 0:
        raise UsageError(f"--tolerance must be 0 or more, got {cfg.tolerance}", hint="0 accepts no leaked connection")
    if cfg.pool_limit is not None and cfg.pool_limit < 1:
        raise UsageError(
            f"--pool-limit must be at least 1, got {cfg.pool_limit}", hint="pool_size + max_overflow, e.g. 30"
        )
    check_production(cfg.prod_rps, cfg.prod_pool, cfg.prod_instances, cfg.prod_max_connections)
    check_run_id(cfg.run_id)


def _check_service(cfg: RunConfig) -> None:
    """How the service is started, reached and read: its environment, commands, paths, database."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.database_env):
        raise UsageError(
            f"--database-env {cfg.database_env!r} is not an environment variable name",
            hint="use letters, digits and _, like DATABASE_URL",
        )
    for name, value in cfg.serve_env.items():
        if not name or "=" in name or "\x00" in name + value:
            raise UsageError(f"[target] env {name!r} cannot be an environment variable", hint="name it like APP_ENV")
    for flag, command in (("--serve", cfg.serve), ("--setup", cfg.setup)):
        if command is not None:
            _check_command(flag, command)
    for flag, path in (("--probe-path", cfg.probe_path), ("--pool-view", cfg.pool_view)):
        if path is not None and not request_path(path):
            raise UsageError(f"{flag} {path!r} is not a path", hint=f"write it like {flag} /health/db")
    if not 0.05 <= cfg.interval <= 60:
        raise UsageError(f"--interval {cfg.interval}s is outside 50ms..60s", hint="the default 250ms samples at 4 Hz")
    if cfg.dsn is not None:
        check_dsn(cfg.dsn)
    check_target(cfg.serve, cfg.target_url, cfg.dsn)
    if cfg.setup is not None and cfg.serve is None:
        raise UsageError("--setup runs before --serve, but no --serve was given", hint="add --serve 'CMD {port}'")


def _check_given_target(cfg: RunConfig) -> None:
    """What drainwatch cannot do to a service it did not start (--target-url)."""
    if cfg.target_url is not None and cfg.via_pgbouncer:
        raise UsageError(
            "--via-pgbouncer puts a PgBouncer between a service drainwatch starts and its database, and "
            "drainwatch does not start one given by --target-url",
            hint="use --serve so drainwatch starts it (its DATABASE_URL then points at the pooler)",
        )
    if cfg.pgbouncer is not None:
        check_pgbouncer(cfg)
    if cfg.target_url is not None and cfg.dev_mode:
        raise UsageError(
            "--dev-mode starts the service with PYTHONDEVMODE=1, and drainwatch does not start one given by --target-url",
            hint="use --serve so drainwatch starts it, or start it yourself with PYTHONDEVMODE=1",
        )
    if cfg.target_url is not None and (cfg.isolate or cfg.sweep_disconnect) and not cfg.no_restart:
        flag = "--isolate" if cfg.isolate else "--sweep-disconnect"
        raise UsageError(
            f"{flag} restarts the service between cycles, and drainwatch cannot restart one given by --target-url",
            hint="use --serve so drainwatch starts it, or add --no-restart (the cycles then share its state)",
        )
    if cfg.target_url is not None and not any(vars(cfg.match).values()) and not _loopback(cfg.target_url):
        raise UsageError(
            "drainwatch cannot see the processes of a service on another machine, so it cannot tell its "
            "backends from the others",
            hint="select them: --app-name 'myapp%' (or --usename, --datname, --client-addr)",
        )


def _check_load(cfg: RunConfig) -> None:
    """The load and what is done to it: the locustfile, metrics, cycles, faults, the output folder."""
    if cfg.locustfile is not None:
        if not cfg.locustfile.is_file():
            raise UsageError(f"locustfile {cfg.locustfile} does not exist", hint="check the path given to --locustfile")
        if "User" not in cfg.locustfile.read_text(errors="replace"):
            raise UsageError(
                f"locustfile {cfg.locustfile} defines no user class",
                hint="define a class that subclasses HttpUser or FastHttpUser",
            )
    if cfg.metrics_port is not None:
        check_port_free(cfg.metrics_port, "--metrics-port")
    if cfg.sweep_disconnect and cfg.isolate:
        raise UsageError("--isolate and --sweep-disconnect cannot be combined", hint="run them one after the other")
    if cfg.faults:
        check_faults(
            cfg.faults,
            duration=cfg.duration,
            embedded=cfg.dsn is None,
            own_target=cfg.target_url is None,
            docker_postgres=cfg.docker_postgres,
            docker_target=cfg.docker_target,
            pooler=cfg.via_pgbouncer is not None,
            pooler_mode=cfg.via_pgbouncer,
            external_pooler=cfg.pgbouncer is not None,
        )
    check_writable(cfg.out)


def untested_kinds(cfg: RunConfig) -> list[str]:
    """The default mix's chaos kinds this run left out because the service has no request for them."""
    return [k for k in DEFAULT_MIX if k != "steady" and k not in cfg.mix and cfg.traffic.chaos.get(k) is None]


_CHAOS_EXAMPLES = {"error": "error=GET /orders/999 404", "timeout": "timeout=GET /report 504"}


def untested_note(kinds: Sequence[str]) -> str:
    """What a verdict must say of the kinds it never sent: it cannot speak for their paths."""
    examples = " ".join(f'--chaos "{_CHAOS_EXAMPLES[k]}"' for k in kinds if k in _CHAOS_EXAMPLES)
    return (
        f"not tested: {' and '.join(kinds)}, which this service has no request for, so a leak on that path "
        f"(an error handler, a deadline) cannot show; name the request, e.g. {examples}"
    )


def check_production(rps: float | None, pool: int | None, instances: int | None = 1, server: int | None = None) -> None:
    """Raise UsageError for production figures no forecast can be made from."""
    if rps is not None and not (math.isfinite(rps) and rps > 0):
        raise UsageError(
            f"--prod-rps must be a number above 0, got {rps:g}", hint="production requests per second, e.g. 40"
        )
    if pool is not None and pool < 0:
        raise UsageError(f"--prod-pool must be a size, got {pool}", hint="e.g. 30 for pool_size=20, max_overflow=10")
    if instances is not None and instances < 1:
        raise UsageError(
            f"--prod-instances must be 1 or more, got {instances}", hint="how many copies of the service run"
        )
    if server is not None and server < 1:
        raise UsageError(
            f"--prod-max-connections must be 1 or more, got {server}",
            hint="production's max_connections less its reserved slots, e.g. 97",
        )


def check_run_id(run_id: str) -> None:
    """Raise UsageError unless ``run_id`` names one folder inside --out."""
    if len(run_id.encode()) > MAX_RUN_ID:
        raise UsageError(
            f"--run-id is {len(run_id.encode())} bytes long, more than a folder name can take ({MAX_RUN_ID})",
            hint="use a short name, like --run-id before-fix",
        )
    if run_id in ("", ".", "..") or "/" in run_id or "\x00" in run_id or any(c < " " for c in run_id):
        raise UsageError(
            f"--run-id {run_id!r} is not a folder name", hint="use one name without /, like --run-id before-fix"
        )


def _check_command(flag: str, command: str) -> None:
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{flag} {command!r} cannot be split into words ({exc})", hint="check its quotes") from exc
    if not words:
        raise UsageError(f"{flag} names no command", hint="e.g. --serve 'uvicorn app.main:app --port {port}'")


def check_programs(cfg: RunConfig) -> None:
    """Raise UsageError for a ``--serve`` or ``--setup`` program this machine does not have: checked
    just before a run (a plan may be written for another machine, as a CI workflow is)."""
    for flag, command in (("--serve", cfg.serve), ("--setup", cfg.setup)):
        words = shlex.split(command) if command else []
        if words and os.sep not in words[0] and shutil.which(words[0]) is None:
            raise UsageError(
                f"{flag}: there is no program {words[0]!r} on PATH",
                hint="install it in this environment, or give its path (e.g. python -m uvicorn …)",
            )


def check_target(serve: str | None, target_url: str | None, dsn: str | None) -> None:
    """Raise UsageError for two targets at once, a target URL that is not one, or one without its database."""
    if serve is not None and target_url is not None:
        raise UsageError(
            "--serve and --target-url name two services",
            hint="give one: --serve starts yours, --target-url uses a running one",
        )
    if target_url is not None:
        try:
            parts = urlsplit(target_url)
            port = parts.port  # ValueError for one that is not a number or out of range
        except ValueError:
            parts, port = None, None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or port == 0
            or any(c <= " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in target_url)
        ):
            raise UsageError(
                f"--target-url {target_url!r} is not an http(s) URL",
                hint="write it like http://127.0.0.1:8000",
            )
        if dsn is None:
            raise UsageError(
                "--target-url needs --dsn: drainwatch must watch the database the target uses",
                hint="add --dsn postgresql://USER@HOST:PORT/DB (password from PGPASSWORD or ~/.pgpass)",
            )


def _loopback(url: str) -> bool:
    import ipaddress

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(port: int, flag: str, host: str = "127.0.0.1") -> None:
    """Raise UsageError when nothing can listen on ``host:port``."""
    import errno
    import socket

    if not 0 < port < 65536:
        raise UsageError(f"{flag} {port} is not a port number", hint="use a port between 1024 and 65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError) as exc:
        raise UsageError(
            f"cannot listen on {host!r} ({flag}): not an address here", hint="use 127.0.0.1 or 0.0.0.0"
        ) from exc
    with socket.socket(family) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise UsageError(
                    f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}", hint="use 127.0.0.1 or 0.0.0.0"
                ) from exc
            raise UsageError(f"port {port} ({flag}) is already in use", hint=f"choose another {flag}") from exc


def check_dsn(dsn: str, flag: str = "--dsn", example: str = "postgresql://USER@127.0.0.1:5432/DBNAME") -> None:
    """Raise UsageError when ``dsn`` (given as ``flag``) cannot be parsed as a libpq connection string."""
    import psycopg.conninfo

    if "\x00" in dsn:
        raise UsageError(f"{flag} holds a character no connection string can", hint=f"write it like {example}")
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except (psycopg.ProgrammingError, UnicodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unparseable"
        raise UsageError(
            f"{flag} is not a valid connection string ({redact_dsn(reason)})", hint=f"write it like {example}"
        ) from exc
    if not dsn.strip():
        raise UsageError(f"{flag} is empty", hint=f"write it like {example}")
    port = str(psycopg.conninfo.conninfo_to_dict(dsn).get("port") or "5432")
    if not all(part.strip().isascii() and part.strip().isdigit() for part in port.split(",")):
        raise UsageError(f"port {port!r} in {flag} is not a number", hint=f"write it like {example}")
    if not all(0 < int(part) < 65536 for part in port.split(",")):
        raise UsageError(
            f"port {port!r} in {flag} is not a port number", hint="ports go from 1 to 65535; 5432 is usual"
        )


ADMIN_EXAMPLE = "postgresql://pgbouncer@127.0.0.1:6432/pgbouncer"


def check_pgbouncer(cfg: RunConfig) -> None:
    """Raise UsageError unless ``--pgbouncer`` names an admin console beside a service and a server to watch."""
    import psycopg.conninfo

    assert cfg.pgbouncer is not None
    if cfg.via_pgbouncer:
        raise UsageError(
            "--pgbouncer reads a PgBouncer you run and --via-pgbouncer starts one: the service goes through one pooler",
            hint="give one: --pgbouncer ADMIN_DSN for yours, --via-pgbouncer MODE for one drainwatch starts",
        )
    check_dsn(cfg.pgbouncer, "--pgbouncer", ADMIN_EXAMPLE)
    database = psycopg.conninfo.conninfo_to_dict(cfg.pgbouncer).get("dbname")
    if database != "pgbouncer":
        raise UsageError(
            f"--pgbouncer names database {database or '(none)'!r}, not PgBouncer's admin console",
            hint=f"its database is pgbouncer: write it like {ADMIN_EXAMPLE}",
        )
    if cfg.demo:
        raise UsageError(
            "--pgbouncer watches the PgBouncer your service goes through, and the demo service does not",
            hint="give your service with --serve CMD (or --target-url URL)",
        )
    if cfg.dsn is None:
        raise UsageError(
            "--pgbouncer needs --dsn: drainwatch watches the PostgreSQL behind your PgBouncer too",
            hint="add --dsn postgresql://USER@HOST:PORT/DB, the server the pooler connects to",
        )


def check_writable(out: Path) -> None:
    """Raise UsageError unless a file can really be created in ``out`` (or the folder that would hold it).

    Permission bits are not enough: root writes through them, and /proc or /sys refuse
    whatever they say. So a probe file is created and removed.
    """
    try:
        probe = out.resolve()
        while not probe.exists():
            probe = probe.parent
        if probe == out.resolve() and not probe.is_dir():
            raise UsageError(f"--out {out} is a file, not a folder", hint="choose a folder with --out DIR")
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        fd, name = tempfile.mkstemp(dir=probe, prefix=".drainwatch-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UsageError(f"output folder {out} is not writable", hint="choose another with --out DIR") from exc
