"""``drainwatch run``: its options, the plan they build, and running it interruptibly."""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from drainwatch.cli.boundary import console, run_interruptible
from drainwatch.errors import EXIT_USAGE, UsageError
from drainwatch.plan import DEFAULT_MIX, Match, RunConfig, check_target, parse_delays, parse_fault, parse_mix, validate
from drainwatch.traffic import SCENARIO_VARIABLES, Traffic, check_header, parse_chaos, parse_header, traffic_from
from drainwatch.units import parse_duration

if TYPE_CHECKING:
    from rich.console import Console

    from drainwatch.judge.verdict import Verdict

EPILOG = """\b
Exit codes: 0 PASS, 1 LEAK, 2 usage or environment error (or verdict ERROR),
3 internal error (a drainwatch bug; the traceback is kept in a file), 4 SATURATED
(the service stopped serving its steady traffic under the load, no leak),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
Every option can also be set as an environment variable, DRAINWATCH_<OPTION>
(e.g. DRAINWATCH_USERS=50); the command line wins."""


# Options where an empty string is a mistake (--serve '' would otherwise run the bundled demo).
_NO_EMPTY = frozenset({"serve", "setup", "target_url", "dsn", "run_id", "out", "probe_path", "locustfile", "config"})


class Duration(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic since click 8.2
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        flag = f"--{param.name.replace('_', '-')}" if param and param.name else "duration"
        return parse_duration(
            str(value), name=flag
        )  # a number from drainwatch.toml too: 0, -1 and nan are no durations


DURATION = Duration()


def _env(name: str) -> str:
    return f"DRAINWATCH_{name}"


def prod_options(*, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The production figures of the forecast, shared by ``run`` and ``forecast``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            [
                click.option(
                    "--prod-rps",
                    type=float,
                    required=required,
                    envvar=_env("PROD_RPS"),
                    help="Forecast: production requests per second.",
                ),
                click.option(
                    "--prod-disconnect",
                    default="0",
                    envvar=_env("PROD_DISCONNECT"),
                    help="Forecast: share of requests whose client hangs up (0.5%).",
                ),
                click.option(
                    "--prod-timeout",
                    default="0",
                    envvar=_env("PROD_TIMEOUT"),
                    help="Forecast: share of requests that hit a deadline.",
                ),
                click.option(
                    "--prod-error",
                    default="0",
                    envvar=_env("PROD_ERROR"),
                    help="Forecast: share of requests whose handler fails.",
                ),
                click.option(
                    "--prod-pool",
                    type=int,
                    envvar=_env("PROD_POOL"),
                    help="Forecast: production pool size (default: the target's pool limit).",
                ),
                click.option(
                    "--prod-instances",
                    type=int,
                    default=1,
                    show_default=True,
                    envvar=_env("PROD_INSTANCES"),
                    help="Forecast: copies of the service sharing the load and the database server.",
                ),
                click.option(
                    "--prod-max-connections",
                    type=int,
                    envvar=_env("PROD_MAX_CONNECTIONS"),
                    help="Forecast: connections production's server gives its clients (max_connections less "
                    "the reserved): says whether the server, not the pool, runs out first.",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


@click.command(epilog=EPILOG)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar=_env("CONFIG"),
    help="TOML config (default: ./drainwatch.toml, or [tool.drainwatch] in ./pyproject.toml). "
    "The command line and DRAINWATCH_* variables override it.",
)
@click.option(
    "--variant",
    type=click.Choice(["leaky", "fixed"]),
    default="leaky",
    show_default=True,
    envvar=_env("VARIANT"),
    help="Which demo service to run (ignored with --target-url).",
)
@click.option(
    "--dsn",
    envvar=_env("DSN"),
    metavar="DSN",
    help="Watch this PostgreSQL instead of starting an embedded one. Keep the password in PGPASSWORD or ~/.pgpass.",
)
@click.option(
    "--serve",
    envvar=_env("SERVE"),
    metavar="CMD",
    help="Start your service with this command and test it: {port} becomes a free port, and it gets "
    "its database in $DATABASE_URL (embedded PostgreSQL unless --dsn). E.g. "
    "--serve 'uvicorn app.main:app --port {port}'.",
)
@click.option(
    "--setup", envvar=_env("SETUP"), metavar="CMD", help="Run once before --serve starts (e.g. 'alembic upgrade head')."
)
@click.option(
    "--database-env",
    default="DATABASE_URL",
    show_default=True,
    envvar=_env("DATABASE_ENV"),
    metavar="NAME",
    help="The variable that hands a served service its database URL (PG* variables are set too).",
)
@click.option(
    "--via-pgbouncer",
    type=click.Choice(["session", "transaction"]),
    envvar=_env("VIA_PGBOUNCER"),
    help="Start a real PgBouncer (Debian's pgbouncer) in this pool mode between the service and PostgreSQL, "
    "hand the service its address, and read its SHOW POOLS beside pg_stat_activity.",
)
@click.option(
    "--pgbouncer",
    envvar=_env("PGBOUNCER"),
    metavar="ADMIN_DSN",
    help="Your service goes through a PgBouncer you run: read its admin console (e.g. "
    "postgresql://pgbouncer@127.0.0.1:6432/pgbouncer) for SHOW POOLS beside pg_stat_activity. Needs --dsn, "
    "the server behind it; a served service gets the pooler's address in $DATABASE_URL.",
)
@click.option(
    "--no-instrument",
    is_flag=True,
    envvar=_env("NO_INSTRUMENT"),
    help="Do not record the served service's pools: by default drainwatch's bootstrap (a sitecustomize on its "
    "PYTHONPATH, no change to its code) hooks SQLAlchemy, asyncpg and psycopg_pool pools in every process and "
    "names the line that took each connection left open.",
)
@click.option(
    "--dev-mode",
    is_flag=True,
    envvar=_env("DEV_MODE"),
    help="Start the service (the demo or --serve) with PYTHONDEVMODE=1, so ResourceWarning, 'never awaited' "
    "and asyncio's debug warnings reach its log, where drainwatch reads them.",
)
@click.option(
    "--embedded-max-connections",
    type=int,
    default=100,
    show_default=True,
    envvar=_env("EMBEDDED_MAX_CONNECTIONS"),
    help="max_connections of the embedded PostgreSQL: a small server shows a leak filling it in seconds.",
)
@click.option(
    "--target-url",
    envvar=_env("TARGET_URL"),
    metavar="URL",
    help="Test this running service instead of the demo (needs --dsn).",
)
@click.option(
    "-e",
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="'METHOD /PATH'",
    help="A steady request of your service (repeatable); the disconnect kind hangs up on the first.",
)
@click.option(
    "--chaos",
    "chaos",
    multiple=True,
    metavar="'KIND=METHOD /PATH [STATUSES]'",
    help="The request a chaos kind sends to your service (repeatable; wins over [chaos.*] in drainwatch.toml), "
    "e.g. --chaos 'error=GET /orders/999 404' (the statuses a failing handler answers; default 500,502), "
    "'timeout=GET /report 504', 'disconnect=POST /chat'.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Sent with every request and the probe (repeatable), e.g. 'Authorization: Bearer TOKEN'.",
)
@click.option(
    "--no-restart",
    is_flag=True,
    envvar=_env("NO_RESTART"),
    help="Let --isolate/--sweep-disconnect run against a --target-url service drainwatch cannot restart "
    "(the cycles then share its state).",
)
@click.option(
    "--app-name",
    envvar=_env("APP_NAME"),
    metavar="PATTERN",
    help="Select the target's backends by application_name (SQL LIKE, e.g. 'myapp%').",
)
@click.option("--usename", envvar=_env("USENAME"), help="Select the target's backends by database user.")
@click.option("--datname", envvar=_env("DATNAME"), help="Select the target's backends by database name.")
@click.option("--client-addr", envvar=_env("CLIENT_ADDR"), help="Select the target's backends by client address.")
@click.option(
    "-u", "--users", type=int, default=20, show_default=True, envvar=_env("USERS"), help="Concurrent Locust users."
)
@click.option(
    "--rate",
    type=float,
    envvar=_env("RATE"),
    metavar="RPS",
    help="Requests per second for the whole load (warm-up too), shared by the users (Locust's "
    "constant_throughput): a soak at production's rate instead of as fast as the users go. The forecast uses it "
    "when --prod-rps is not given.",
)
@click.option(
    "-r",
    "--spawn-rate",
    type=float,
    default=20,
    show_default=True,
    envvar=_env("SPAWN_RATE"),
    help="Users started per second.",
)
@click.option(
    "--warmup",
    type=DURATION,
    default="10s",
    show_default=True,
    envvar=_env("WARMUP"),
    help="Steady traffic first, so pools fill to their working size.",
)
@click.option(
    "--baseline",
    type=DURATION,
    default="5s",
    show_default=True,
    envvar=_env("BASELINE"),
    help="Quiet window after warm-up; its connection count is the baseline.",
)
@click.option(
    "-t",
    "--duration",
    type=DURATION,
    default="30s",
    show_default=True,
    envvar=_env("DURATION"),
    help="Length of the chaos load phase.",
)
@click.option(
    "--settle",
    type=DURATION,
    default="20s",
    show_default=True,
    envvar=_env("SETTLE"),
    help="Longest wait after traffic stops for connections to come back (ends early once counts are still).",
)
@click.option(
    "--interval",
    type=DURATION,
    default="250ms",
    show_default=True,
    envvar=_env("INTERVAL"),
    help="Collector sampling interval (4 Hz by default; 50ms for 20 Hz).",
)
@click.option(
    "--mix",
    default=",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()),
    show_default=True,
    envvar=_env("MIX"),
    help="Weights of the chaos kinds in the load phase.",
)
@click.option(
    "-f",
    "--locustfile",
    type=click.Path(path_type=Path),
    envvar=_env("LOCUSTFILE"),
    help="Your own locustfile for the load phase (drainwatch still does the rest).",
)
@click.option(
    "--isolate",
    is_flag=True,
    envvar=_env("ISOLATE"),
    help="Run each chaos kind alone (steady as control), each with its own warm-up, baseline, load, "
    "settle and probe, the demo restarted between them: names the kinds that leak, per 1,000 requests.",
)
@click.option(
    "--sweep-disconnect",
    metavar="MS,MS,…",
    envvar=_env("SWEEP_DISCONNECT"),
    help="Run the disconnect kind alone at each hang-up delay (e.g. 0,100,300,600,1000) and report leak "
    "probability against delay: race windows show up there.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND@TIME",
    help="Inject a fault during the load (repeatable), TIME from the load's start, +DURATION where it lasts: "
    "pg-restart@20s (PostgreSQL restarted), terminate-backends@20s (the service's backends killed by the server), "
    "pause-target@20s+5s (the service frozen, SIGSTOP then SIGCONT), pooler-kill@20s (KILL at the PgBouncer "
    "drainwatch started: every client and server connection dropped, then RESUME; --via-pgbouncer), pg-pause@20s+5s (PAUSE then RESUME at that PgBouncer; "
    "transaction mode).",
)
@click.option(
    "--docker-postgres",
    metavar="CONTAINER",
    envvar=_env("DOCKER_POSTGRES"),
    help="With the compose stack: --fault pg-restart restarts this container (Docker SDK).",
)
@click.option(
    "--docker-target",
    metavar="CONTAINER",
    envvar=_env("DOCKER_TARGET"),
    help="With the compose stack: --fault pause-target pauses this container (Docker SDK).",
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    envvar=_env("WORKERS"),
    help="Run Locust as a master with this many local worker processes.",
)
@click.option(
    "--metrics-port",
    type=int,
    envvar=_env("METRICS_PORT"),
    help="Serve the collector's latest sample for Prometheus on 127.0.0.1:PORT/metrics during the run.",
)
@click.option(
    "--probe-path",
    envvar=_env("PROBE_PATH"),
    metavar="PATH",
    help="Request sent after settle to see whether the service still serves; it must reach the database "
    "(default: the first endpoint; /health/db for the demo).",
)
@click.option(
    "--probe-timeout",
    type=DURATION,
    default="5s",
    show_default=True,
    envvar=_env("PROBE_TIMEOUT"),
    help="A probe request that takes longer has failed (a hung pool).",
)
@click.option(
    "--tolerance",
    type=int,
    default=0,
    show_default=True,
    envvar=_env("TOLERANCE"),
    help="Connections over baseline (or left in use) still accepted as PASS.",
)
@click.option(
    "--pool-limit",
    type=int,
    envvar=_env("POOL_LIMIT"),
    help="The target's pool limit, drawn on the chart (known for the demo).",
)
@click.option(
    "--pool-view",
    envvar=_env("POOL_VIEW"),
    metavar="PATH",
    help="Where your service serves its own pool counts (see drainwatch.instrument), e.g. /_drainwatch/pool.",
)
@prod_options(required=False)
@click.option(
    "-o",
    "--out",
    type=str,  # not click.Path: it turns '' into '.', and an empty --out is a mistake to name
    default="reports",
    show_default=True,
    envvar=_env("OUT"),
    help="Folder that receives the run folder <out>/<run-id>/.",
)
@click.option("--run-id", envvar=_env("RUN_ID"), help="Name of the run folder (default: time and variant).")
@click.option("-q", "--quiet", is_flag=True, envvar=_env("QUIET"), help="Print only the verdict.")
@click.option("--checkpoint-every", type=DURATION, default="10m", envvar=_env("CHECKPOINT_EVERY"), hidden=True)
@click.pass_context
def run(ctx: click.Context, /, config_path: Path | None, **opts: object) -> None:
    """Run warm-up, baseline, chaos load, settle and probe; print the verdict; write the report.

    \b
    With no options: an embedded PostgreSQL, the leaky demo service and the default
    chaos mix, in under a minute. Your own service, started by drainwatch:
      drainwatch run --serve 'uvicorn app.main:app --port {port}' -e 'GET /items' \\
        --chaos 'error=GET /items/999 404'
    The run folder (reports/<run-id>/) gets run.json, samples.csv, lingering.csv,
    Locust's CSVs, summary.json, junit.xml and report.html.
    """
    _run_with_boundary(ctx, plan_from(ctx, config_path, opts))


def plan_from(ctx: click.Context, config_path: Path | None, opts: dict[str, object]) -> RunConfig:
    """The run plan from the command line, DRAINWATCH_* variables and the config file, in that order."""
    from drainwatch import configfile

    path = config_path or configfile.find_config(Path.cwd())
    locust_env: dict[str, str] = {}
    tables: dict[str, Any] = {}  # file-only values: string tables and the served service's folder
    if path is not None:
        file_options, locust_env = configfile.load(path)
        params = {p.name: p for p in ctx.command.params}
        for name, value in file_options.items():
            if name not in params:  # string tables: env, headers, probe headers
                tables[name] = value
            elif ctx.get_parameter_source(name) == ParameterSource.DEFAULT:
                opts[name] = _from_file(ctx, params[name], value, path)
    locust_env |= {name: os.environ[name] for name in SCENARIO_VARIABLES if name in os.environ}
    mix_given = ctx.get_parameter_source("mix") != ParameterSource.DEFAULT or bool(path and "mix" in file_options)
    return build_config(
        _Options(opts), locust_env, tables, config_file=str(path) if path else None, mix_given=mix_given
    )


def _from_file(ctx: click.Context, param: click.Parameter, value: object, path: Path) -> object:
    """A value from the config file, converted as the option's own would be; UsageError naming the key."""
    from drainwatch.configfile import OPTION_KEYS

    key = next((k for k, name in OPTION_KEYS.items() if name == param.name), str(param.name))
    wrong = isinstance(param.type, click.types.IntParamType) and not (
        isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit())
    )
    try:
        if wrong:  # int() would take 1.5 as 1, and fail on inf with OverflowError
            raise click.BadParameter(f"{value!r} is not a whole number")
        if isinstance(param, click.Option) and param.is_flag and not isinstance(value, bool):
            raise click.BadParameter(f"{value!r} is not true or false")
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise UsageError(
            f"{key} in {path.name}: {exc.message}", hint=f"see `drainwatch init` for what {key} takes"
        ) from exc
    except (TypeError, ValueError, OverflowError) as exc:  # Click's types expect text
        raise UsageError(
            f"{key} in {path.name}: {value!r} is not a valid value", hint=f"see `drainwatch init` for what {key} takes"
        ) from exc


class _Options:
    """Typed reads of Click's option values (the library never sees them untyped)."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = values

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is not None and str(value).strip() == "" and name in _NO_EMPTY:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is empty", hint=f"give {flag} a value, or leave it out for its default")
        return None if value is None or value == "" else str(value)

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        return None if value is None else float(str(value))

    def whole(self, name: str) -> int | None:
        value = self.values.get(name)
        return None if value is None else int(str(value))

    def flag(self, name: str) -> bool:
        return bool(self.values.get(name))

    def many(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name) or ()
        return tuple(str(v) for v in value) if isinstance(value, (tuple, list)) else (str(value),)


def build_config(
    o: _Options,
    locust_env: Mapping[str, str],
    tables: Mapping[str, Any],
    *,
    config_file: str | None = None,
    mix_given: bool = False,
) -> RunConfig:
    """The frozen plan. Raises UsageError for a value that cannot be one."""
    variant = o.text("variant") or "leaky"
    serve, target_url = o.text("serve"), o.text("target_url")
    demo = not (serve or target_url)
    check_target(serve, target_url, o.text("dsn"))  # before the traffic: a bad URL is the first thing to fix
    headers = dict(tables.get("header_table", {})) | dict(parse_header(h) for h in o.many("headers"))
    for name, value in tables.get("probe_headers", {}).items():
        check_header(name, value, what="[probe] headers")
    for text in o.many("chaos"):
        locust_env = {**locust_env, **parse_chaos(text)}
    traffic = traffic_from(
        locust_env,
        demo=demo,
        endpoints=o.many("endpoints"),
        headers=headers,
        own_locustfile=o.text("locustfile") is not None,
    )
    mix = _fitting_mix(parse_mix(o.text("mix") or ""), traffic, given=mix_given)
    who = "serve" if serve else "target" if target_url else variant
    cwd = o.text("serve_cwd") or tables.get("serve_cwd")
    return RunConfig(
        variant=variant,
        dsn=o.text("dsn"),
        target_url=target_url,
        serve=serve,
        setup=o.text("setup"),
        serve_env=tables.get("serve_env", {}),
        serve_cwd=Path(cwd) if cwd else None,
        database_env=o.text("database_env") or "DATABASE_URL",
        no_restart=o.flag("no_restart"),
        dev_mode=o.flag("dev_mode"),
        instrument=not o.flag("no_instrument"),
        via_pgbouncer=o.text("via_pgbouncer"),
        pgbouncer=o.text("pgbouncer"),
        match=Match(
            application_name=o.text("app_name"),
            usename=o.text("usename"),
            datname=o.text("datname"),
            client_addr=o.text("client_addr"),
        ),
        users=o.whole("users") or 0,
        spawn_rate=o.number("spawn_rate") or 0.0,
        rate=o.number("rate"),
        warmup=o.number("warmup") or 0.0,
        baseline=o.number("baseline") or 0.0,
        duration=o.number("duration") or 0.0,
        settle=o.number("settle") or 0.0,
        interval=o.number("interval") or 0.0,
        mix=mix,
        locustfile=Path(lf) if (lf := o.text("locustfile")) else None,
        probe_path=o.text("probe_path"),
        probe_headers=headers | dict(tables.get("probe_headers", {})),
        probe_timeout=o.number("probe_timeout") or 0.0,
        tolerance=o.whole("tolerance") or 0,
        pool_limit=o.whole("pool_limit"),
        pool_view=o.text("pool_view"),
        workers=o.whole("workers") or 0,
        metrics_port=o.whole("metrics_port"),
        prod_rps=o.number("prod_rps"),
        prod_shares=shares(o.values),
        prod_pool=o.whole("prod_pool"),
        prod_instances=1 if (n := o.whole("prod_instances")) is None else n,
        prod_max_connections=o.whole("prod_max_connections"),
        faults=tuple(parse_fault(text) for text in o.many("faults")),
        isolate=o.flag("isolate"),
        docker_postgres=o.text("docker_postgres"),
        docker_target=o.text("docker_target"),
        sweep_disconnect=parse_delays(sweep) if (sweep := o.text("sweep_disconnect")) else (),
        traffic=traffic,
        out=Path(o.text("out") or "reports"),
        run_id=o.text("run_id") or time.strftime("%Y%m%d-%H%M%S-") + who,
        quiet=o.flag("quiet"),
        config_file=config_file,
        checkpoint_every=o.number("checkpoint_every") or 600.0,
        embedded_max_connections=100 if (mc := o.whole("embedded_max_connections")) is None else mc,
    )


def _fitting_mix(mix: dict[str, int], traffic: Traffic, *, given: bool) -> dict[str, int]:
    """The mix without the chaos kinds this service has no request for.

    Raises UsageError when the user asked for such a kind: it would test nothing.
    """
    missing = [kind for kind, weight in mix.items() if weight and kind != "steady" and traffic.chaos.get(kind) is None]
    if missing and given:
        kind = missing[0]
        raise UsageError(
            f"the {kind} kind has no request to send to your service",
            hint=f'name it: --chaos "{kind}=METHOD /path" (or [chaos.{kind}] request in drainwatch.toml), or leave {kind} out of --mix',
        )
    kept = {kind: weight for kind, weight in mix.items() if kind not in missing}
    if not any(kept.values()):
        raise UsageError("--mix gives no traffic this service can take", hint="give steady or disconnect a weight")
    return kept


def shares(opts: Mapping[str, object]) -> dict[str, float]:
    from drainwatch.report.forecast import parse_share

    shares = {}
    for kind in ("disconnect", "timeout", "error"):
        text = str(opts[f"prod_{kind}"])
        try:
            shares[kind] = parse_share(text)
        except ValueError as exc:
            raise UsageError(f"--prod-{kind} {text!r} is not a share", hint="write it like 0.5% or 0.005") from exc
        if not 0 <= shares[kind] <= 1:
            raise UsageError(f"--prod-{kind} {text!r} is not between 0 and 100 %", hint="write it like 0.5%")
    return shares


def _run_with_boundary(ctx: click.Context, cfg: RunConfig) -> None:
    from drainwatch.run.live import print_verdict

    verdict = run_plan(cfg, console)
    print_verdict(console, verdict, cfg.run_dir)
    ctx.exit(verdict.exit_code if verdict else EXIT_USAGE)


def run_plan(cfg: RunConfig, display_on: Console) -> Verdict | None:
    """Validate the plan and run it, interruptibly: what ``drainwatch run`` and the pytest plugin call."""
    from drainwatch.run.execute import execute
    from drainwatch.run.live import Display

    cfg = validate(cfg)
    if cfg.run_dir.exists():
        raise UsageError(f"run folder {cfg.run_dir} already exists", hint="choose another --run-id")
    return run_interruptible(execute(cfg, Display(display_on, quiet=cfg.quiet)))


FILE_ONLY = {"cwd": "serve_cwd", "env": "serve_env", "probe_headers": "probe_headers"}


def plan_from_options(options: Mapping[str, object]) -> RunConfig:
    """The plan for ``drainwatch run`` given as keywords (``serve=``, ``endpoints=[...]``, ``warmup="2s"``,
    ``config=``), parsed by the command's own options: the same types, defaults, DRAINWATCH_*
    variables and config file. ``cwd``, ``env`` and ``probe_headers`` are the served service's
    folder, environment and the probe's headers (tables in drainwatch.toml).

    Raises UsageError for an option ``drainwatch run`` does not have, or a value it refuses.
    """
    params = {p.name: p for p in run.params if isinstance(p, click.Option) and p.name}
    params["config"] = params.pop("config_path")
    argv: list[str] = []
    for name, value in options.items():
        if name in FILE_ONLY or value is None:
            continue
        if name not in params:
            close = difflib.get_close_matches(name, [*params, *FILE_ONLY], n=1)
            raise UsageError(
                f"drainwatch run has no option {name!r}",
                hint=f"did you mean {close[0]!r}?" if close else "see `drainwatch run --help`",
            )
        argv += _tokens(params[name], value)
    try:
        ctx = run.make_context("drainwatch run", argv)
    except click.UsageError as exc:
        raise UsageError(exc.format_message(), hint="see `drainwatch run --help`") from exc
    cfg = plan_from(ctx, ctx.params.pop("config_path"), ctx.params)
    given = {FILE_ONLY[k]: v for k, v in options.items() if k in FILE_ONLY and v is not None}
    probe_headers = _strings(given.get("probe_headers", {}), "probe_headers")
    for name, value in probe_headers.items():
        check_header(name, value, what="probe_headers")
    return replace(
        cfg,
        serve_cwd=Path(str(given["serve_cwd"])) if "serve_cwd" in given else cfg.serve_cwd,
        serve_env={**cfg.serve_env, **_strings(given.get("serve_env", {}), "env")},
        probe_headers={**cfg.probe_headers, **probe_headers},
    )


def _tokens(option: click.Option, value: object) -> list[str]:
    """``value`` as command-line words for ``option``."""
    flag = next(o for o in option.opts if o.startswith("--"))
    if option.is_flag:
        return [flag] if value else []
    values = value if option.multiple and isinstance(value, (list, tuple)) else [value]
    return [word for item in values for word in (flag, str(item))]


def _strings(table: object, name: str) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise UsageError(f"{name} must be a mapping of names to values", hint=f'e.g. {name}={{"NAME": "value"}}')
    return {str(k): str(v) for k, v in table.items()}


@click.pass_context
def _check(ctx: click.Context, /, config_path: Path | None, **opts: object) -> None:
    from drainwatch.run.execute import check
    from drainwatch.run.live import Display

    cfg = validate(plan_from(ctx, config_path, opts))
    found = run_interruptible(check(cfg, Display(console, quiet=True)))
    target = found["target"]
    console.print(
        f"ok  plan: {len(cfg.traffic.steady)} endpoint(s), mix {', '.join(f'{k}={w}' for k, w in cfg.mix.items())}"
    )
    console.print(
        f"ok  database: PostgreSQL {found['database']['version']} at {found['database']['dsn']}", soft_wrap=True
    )
    console.print(
        f"ok  service: {target['command'] or target['url']}, backends by {target['selected_by']}", soft_wrap=True
    )
    for row in (found["preflight"] or {}).get("requests", []):
        console.print(f"ok  {row['kind']:<10} {row['request']} → {row['status'] or row['error']}", soft_wrap=True)
    probe = (found["preflight"] or {}).get("probe")
    if probe:
        console.print(
            f"ok  probe {probe['request']} → {probe['status']}, reached the database ({probe['seen_by']})",
            soft_wrap=True,
        )
    console.print("ready: `drainwatch run` with the same options", soft_wrap=True)


check = click.Command(
    "check",
    callback=_check,
    params=run.params,
    help="Check a config without a run: validate it, start the database and the service, try every request once "
    "and see the probe reach the database. Takes the options of `drainwatch run`; exit 0 when a run could start.",
    epilog=EPILOG,
)
