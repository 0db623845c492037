"""``drainwatch run``: its options, the plan they build, and running it interruptibly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from drainwatch.cli.boundary import console, run_interruptible
from drainwatch.errors import EXIT_USAGE, UsageError
from drainwatch.plan import DEFAULT_MIX, Match, RunConfig, parse_delays, parse_fault, parse_mix, validate
from drainwatch.units import parse_duration

EPILOG = """\b
Exit codes: 0 PASS, 1 LEAK, 2 usage or environment error (or verdict ERROR),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
Every option can also be set as an environment variable, DRAINWATCH_<OPTION>
(e.g. DRAINWATCH_USERS=50); the command line wins."""


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        flag = f"--{param.name.replace('_', '-')}" if param and param.name else "duration"
        return parse_duration(str(value), name=flag)


DURATION = Duration()




def _env(name: str) -> str:
    return f"DRAINWATCH_{name}"


def prod_options(*, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The production figures of the forecast, shared by ``run`` and ``forecast``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed([
            click.option("--prod-rps", type=float, required=required, envvar=_env("PROD_RPS"), help="Forecast: production requests per second."),
            click.option("--prod-disconnect", default="0", envvar=_env("PROD_DISCONNECT"), help="Forecast: share of requests whose client hangs up (0.5%)."),
            click.option("--prod-timeout", default="0", envvar=_env("PROD_TIMEOUT"), help="Forecast: share of requests that hit a deadline."),
            click.option("--prod-error", default="0", envvar=_env("PROD_ERROR"), help="Forecast: share of requests whose handler fails."),
            click.option("--prod-pool", type=int, envvar=_env("PROD_POOL"), help="Forecast: production pool size (default: the target's pool limit)."),
        ]):
            command = option(command)
        return command

    return decorate


@click.command(epilog=EPILOG)
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), envvar=_env("CONFIG"),
              help="TOML config (default: ./drainwatch.toml, or [tool.drainwatch] in ./pyproject.toml). "
                   "The command line and DRAINWATCH_* variables override it.")
@click.option("--variant", type=click.Choice(["leaky", "fixed"]), default="leaky", show_default=True, envvar=_env("VARIANT"),
              help="Which demo service to run (ignored with --target-url).")
@click.option("--dsn", envvar=_env("DSN"), metavar="DSN",
              help="Watch this PostgreSQL instead of starting an embedded one. Keep the password in PGPASSWORD or ~/.pgpass.")
@click.option("--target-url", envvar=_env("TARGET_URL"), metavar="URL", help="Test this running service instead of the demo (needs --dsn).")
@click.option("--app-name", envvar=_env("APP_NAME"), metavar="PATTERN",
              help="Select the target's backends by application_name (SQL LIKE, e.g. 'myapp%').")
@click.option("--usename", envvar=_env("USENAME"), help="Select the target's backends by database user.")
@click.option("--datname", envvar=_env("DATNAME"), help="Select the target's backends by database name.")
@click.option("--client-addr", envvar=_env("CLIENT_ADDR"), help="Select the target's backends by client address.")
@click.option("-u", "--users", type=int, default=20, show_default=True, envvar=_env("USERS"), help="Concurrent Locust users.")
@click.option("-r", "--spawn-rate", type=float, default=20, show_default=True, envvar=_env("SPAWN_RATE"), help="Users started per second.")
@click.option("--warmup", type=DURATION, default="10s", show_default=True, envvar=_env("WARMUP"),
              help="Steady traffic first, so pools fill to their working size.")
@click.option("--baseline", type=DURATION, default="5s", show_default=True, envvar=_env("BASELINE"),
              help="Quiet window after warm-up; its connection count is the baseline.")
@click.option("-t", "--duration", type=DURATION, default="30s", show_default=True, envvar=_env("DURATION"),
              help="Length of the chaos load phase.")
@click.option("--settle", type=DURATION, default="20s", show_default=True, envvar=_env("SETTLE"),
              help="Longest wait after traffic stops for connections to come back (ends early once counts are still).")
@click.option("--interval", type=DURATION, default="250ms", show_default=True, envvar=_env("INTERVAL"),
              help="Collector sampling interval (4 Hz by default; 50ms for 20 Hz).")
@click.option("--mix", default=",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()), show_default=True, envvar=_env("MIX"),
              help="Weights of the chaos kinds in the load phase.")
@click.option("-f", "--locustfile", type=click.Path(path_type=Path), envvar=_env("LOCUSTFILE"),
              help="Your own locustfile for the load phase (drainwatch still does the rest).")
@click.option("--isolate", is_flag=True, envvar=_env("ISOLATE"),
              help="Run each chaos kind alone (steady as control), each with its own warm-up, baseline, load, "
                   "settle and probe, the demo restarted between them: names the kinds that leak, per 1,000 requests.")
@click.option("--sweep-disconnect", metavar="MS,MS,…", envvar=_env("SWEEP_DISCONNECT"),
              help="Run the disconnect kind alone at each hang-up delay (e.g. 0,100,300,600,1000) and report leak "
                   "probability against delay: race windows show up there.")
@click.option("--fault", "faults", multiple=True, metavar="KIND@TIME",
              help="Inject a fault during the load (repeatable): pg-restart@20s, terminate-backends@20s, pause-target@20s+5s.")
@click.option("--docker-postgres", metavar="CONTAINER", envvar=_env("DOCKER_POSTGRES"),
              help="With the compose stack: --fault pg-restart restarts this container (Docker SDK).")
@click.option("--docker-target", metavar="CONTAINER", envvar=_env("DOCKER_TARGET"),
              help="With the compose stack: --fault pause-target pauses this container (Docker SDK).")
@click.option("--workers", type=int, default=0, show_default=True, envvar=_env("WORKERS"),
              help="Run Locust as a master with this many local worker processes.")
@click.option("--metrics-port", type=int, envvar=_env("METRICS_PORT"),
              help="Serve the collector's latest sample for Prometheus on 127.0.0.1:PORT/metrics during the run.")
@click.option("--probe-path", default="/health/db", show_default=True, envvar=_env("PROBE_PATH"),
              help="Plain request sent after settle to see whether the service still serves.")
@click.option("--probe-timeout", type=DURATION, default="5s", show_default=True, envvar=_env("PROBE_TIMEOUT"),
              help="A probe request that takes longer has failed (a hung pool).")
@click.option("--tolerance", type=int, default=0, show_default=True, envvar=_env("TOLERANCE"),
              help="Connections over baseline (or left in use) still accepted as PASS.")
@click.option("--pool-limit", type=int, envvar=_env("POOL_LIMIT"), help="The target's pool limit, drawn on the chart (known for the demo).")
@click.option("--pool-view", envvar=_env("POOL_VIEW"), metavar="PATH",
              help="Where your service serves its own pool counts (see drainwatch.instrument), e.g. /_drainwatch/pool.")
@prod_options(required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True, envvar=_env("OUT"),
              help="Folder that receives the run folder <out>/<run-id>/.")
@click.option("--run-id", envvar=_env("RUN_ID"), help="Name of the run folder (default: time and variant).")
@click.option("-q", "--quiet", is_flag=True, envvar=_env("QUIET"), help="Print only the verdict.")
@click.pass_context
def run(ctx: click.Context, config_path: Path | None, **opts: object) -> None:
    """Run warm-up, baseline, chaos load, settle and probe; print the verdict; write the report.

    \b
    With no options: an embedded PostgreSQL, the leaky demo service and the default
    chaos mix, about a minute and a half. The run folder (reports/<run-id>/) gets
    run.json, samples.csv, lingering.csv, Locust's CSVs, summary.json, junit.xml
    and report.html.
    """
    from drainwatch import configfile

    path = config_path or configfile.find_config(Path.cwd())
    locust_env: dict[str, str] = {}
    if path is not None:
        file_options, locust_env = configfile.load(path)
        params = {p.name: p for p in ctx.command.params}
        for name, value in file_options.items():
            if ctx.get_parameter_source(name) == ParameterSource.DEFAULT:
                opts[name] = params[name].type_cast_value(ctx, value)
    cfg = replace(build_config(opts), locust_env=locust_env, config_file=str(path) if path else None)
    _run_with_boundary(ctx, cfg)


def build_config(opts: dict[str, object]) -> RunConfig:
    match = Match(
        application_name=opts["app_name"], usename=opts["usename"],  # type: ignore[arg-type]
        datname=opts["datname"], client_addr=opts["client_addr"],  # type: ignore[arg-type]
    )  # fmt: skip
    variant = str(opts["variant"])
    run_id = str(opts["run_id"] or time.strftime("%Y%m%d-%H%M%S-") + ("target" if opts["target_url"] else variant))
    return RunConfig(
        variant=variant,
        dsn=opts["dsn"],  # type: ignore[arg-type]
        target_url=opts["target_url"],  # type: ignore[arg-type]
        match=match,
        users=int(opts["users"]),  # type: ignore[call-overload]
        spawn_rate=float(opts["spawn_rate"]),  # type: ignore[arg-type]
        warmup=float(opts["warmup"]),  # type: ignore[arg-type]
        baseline=float(opts["baseline"]),  # type: ignore[arg-type]
        duration=float(opts["duration"]),  # type: ignore[arg-type]
        settle=float(opts["settle"]),  # type: ignore[arg-type]
        interval=float(opts["interval"]),  # type: ignore[arg-type]
        mix=parse_mix(str(opts["mix"])),
        locustfile=opts["locustfile"],  # type: ignore[arg-type]
        probe_path=str(opts["probe_path"]),
        probe_timeout=float(opts["probe_timeout"]),  # type: ignore[arg-type]
        tolerance=int(opts["tolerance"]),  # type: ignore[call-overload]
        pool_limit=opts["pool_limit"],  # type: ignore[arg-type]
        pool_view=opts["pool_view"],  # type: ignore[arg-type]
        workers=int(opts["workers"]),  # type: ignore[call-overload]
        metrics_port=opts["metrics_port"],  # type: ignore[arg-type]
        prod_rps=opts["prod_rps"],  # type: ignore[arg-type]
        prod_shares=shares(opts),
        prod_pool=opts["prod_pool"],  # type: ignore[arg-type]
        faults=tuple(parse_fault(str(text)) for text in opts["faults"]),  # type: ignore[attr-defined]
        isolate=bool(opts["isolate"]),
        docker_postgres=opts["docker_postgres"],  # type: ignore[arg-type]
        docker_target=opts["docker_target"],  # type: ignore[arg-type]
        sweep_disconnect=parse_delays(str(opts["sweep_disconnect"])) if opts["sweep_disconnect"] else (),
        out=opts["out"],  # type: ignore[arg-type]
        run_id=run_id,
        quiet=bool(opts["quiet"]),
    )


def shares(opts: dict[str, object]) -> dict[str, float]:
    from drainwatch.report.forecast import parse_share

    shares = {}
    for kind in ("disconnect", "timeout", "error"):
        text = str(opts[f"prod_{kind}"])
        try:
            shares[kind] = parse_share(text)
        except ValueError:
            raise UsageError(f"--prod-{kind} {text!r} is not a share", hint="write it like 0.5% or 0.005") from None
        if not 0 <= shares[kind] <= 1:
            raise UsageError(f"--prod-{kind} {text!r} is not between 0 and 100 %", hint="write it like 0.5%")
    return shares


def _run_with_boundary(ctx: click.Context, cfg: RunConfig) -> None:
    from drainwatch.run.execute import execute
    from drainwatch.run.live import Display, print_verdict

    cfg = validate(cfg)
    if cfg.run_dir.exists():
        raise UsageError(f"run folder {cfg.run_dir} already exists", hint="choose another --run-id")
    display = Display(console, quiet=cfg.quiet)
    verdict = run_interruptible(execute(cfg, display))
    print_verdict(console, verdict, cfg.run_dir)
    ctx.exit(verdict.exit_code if verdict else EXIT_USAGE)
