"""The ``drainwatch`` command: parse, build one plan, call the library, map errors to exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console

from harness import __version__
from harness.config import DEFAULT_MIX, Match, RunConfig, check_dsn, parse_delays, parse_duration, parse_mix, validate
from harness.faults import parse_fault
from harness.errors import EXIT_USAGE, DrainwatchError, Interrupted, UsageError
from harness.rundir import read_json

log = logging.getLogger("drainwatch")
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="drainwatch")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, and tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Does your async service give its PostgreSQL connections back when traffic stops?

    drainwatch drives traffic with Locust, including the traffic that breaks naive cleanup
    (clients that hang up, deadlines that fire, handlers that raise), samples
    pg_stat_activity all along, and judges whether connections return to baseline.

    \b
    Reproduce the 2am outage against the bundled demo service:
      drainwatch run                      # leaky variant: verdict LEAK, exit 1
      drainwatch run --variant fixed      # the same traffic, done right: PASS
    """
    ctx.obj = {"verbose": verbose}
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _env(name: str) -> str:
    return f"DRAINWATCH_{name}"


@cli.command(epilog=EPILOG)
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
              help="Where your service serves its own pool counts (see harness.instrument), e.g. /_drainwatch/pool.")
@click.option("--prod-rps", type=float, envvar=_env("PROD_RPS"), help="Forecast: production requests per second.")
@click.option("--prod-disconnect", default="0", envvar=_env("PROD_DISCONNECT"), help="Forecast: share of requests whose client hangs up (0.5%).")
@click.option("--prod-timeout", default="0", envvar=_env("PROD_TIMEOUT"), help="Forecast: share of requests that hit a deadline.")
@click.option("--prod-error", default="0", envvar=_env("PROD_ERROR"), help="Forecast: share of requests whose handler fails.")
@click.option("--prod-pool", type=int, envvar=_env("PROD_POOL"), help="Forecast: production pool size (default: the target's pool limit).")
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
    from harness import configfile

    path = config_path or configfile.find_config(Path.cwd())
    locust_env: dict[str, str] = {}
    if path is not None:
        file_options, locust_env = configfile.load(path)
        params = {p.name: p for p in ctx.command.params}
        for name, value in file_options.items():
            if ctx.get_parameter_source(name) == ParameterSource.DEFAULT:
                opts[name] = params[name].type_cast_value(ctx, value)
    cfg = replace(_build_config(opts), locust_env=locust_env, config_file=str(path) if path else None)
    _run_with_boundary(ctx, cfg)


def _build_config(opts: dict[str, object]) -> RunConfig:
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
        prod_shares=_shares(opts),
        prod_pool=opts["prod_pool"],  # type: ignore[arg-type]
        faults=tuple(parse_fault(str(text)) for text in opts["faults"]),  # type: ignore[attr-defined]
        isolate=bool(opts["isolate"]),
        sweep_disconnect=parse_delays(str(opts["sweep_disconnect"])) if opts["sweep_disconnect"] else (),
        out=opts["out"],  # type: ignore[arg-type]
        run_id=run_id,
        quiet=bool(opts["quiet"]),
    )


def _shares(opts: dict[str, object]) -> dict[str, float]:
    from harness.forecast import parse_share

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
    from harness.live import Display
    from harness.run import execute
    from harness.live import print_verdict

    cfg = validate(cfg)
    if cfg.run_dir.exists():
        raise UsageError(f"run folder {cfg.run_dir} already exists", hint="choose another --run-id")
    display = Display(console, quiet=cfg.quiet)
    verdict = run_interruptible(execute(cfg, display))
    print_verdict(console, verdict, cfg.run_dir)
    ctx.exit(verdict.exit_code if verdict else EXIT_USAGE)


def run_interruptible(coro):  # type: ignore[no-untyped-def]
    """Run ``coro``; SIGINT/SIGTERM cancel it (so every context manager unwinds) and raise Interrupted.

    A second signal while unwinding is left to the default handler: a fast, hard stop.
    """
    received: list[int] = []

    async def main():  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            if received:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                signal.raise_signal(signum)
                return
            received.append(signum)
            err_console.print(f"\n{signal.Signals(signum).name}: stopping, writing what was collected… (again to force)")
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await coro
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise


@cli.command()
@click.option("--dsn", envvar=_env("DSN"), required=True, metavar="DSN", help="The PostgreSQL to watch (or DRAINWATCH_DSN).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("samples.csv"), show_default=True, help="CSV file to append samples to.")
@click.option("--interval", type=DURATION, default="250ms", show_default=True, help="Sampling interval (50ms..60s).")
@click.option("--duration", type=DURATION, default=None, help="Stop after this long (default: until SIGINT/SIGTERM).")
@click.option("--app-name", metavar="PATTERN", help="Only backends whose application_name is LIKE this.")
@click.option("--usename", help="Only backends of this database user.")
@click.option("--datname", help="Only backends connected to this database.")
@click.option("--client-addr", help="Only backends from this client address.")
@click.option("--metrics-port", type=int, help="Also serve the latest sample for Prometheus at http://HOST:PORT/metrics.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port (0.0.0.0 in a container).")
def collect(dsn: str, out: Path, interval: float, duration: float | None, app_name: str | None,
            usename: str | None, datname: str | None, client_addr: str | None,
            metrics_port: int | None, metrics_host: str) -> None:  # fmt: skip
    """Sample the target's connections in pg_stat_activity into a CSV (the sidecar, alone).

    One connection of its own, in autocommit, excluded from the counts; one line per
    sample, flushed as it is taken; reconnects with backoff if PostgreSQL restarts.
    """
    from harness.collector import run_collector

    check_dsn(dsn)
    if not 0.05 <= interval <= 60:
        raise UsageError(f"--interval {interval}s is outside 50ms..60s", hint="the default 250ms samples at 4 Hz")
    match = Match(application_name=app_name, usename=usename, datname=datname, client_addr=client_addr)
    if metrics_port is None:
        run_collector(dsn, match, out, interval=interval, duration=duration)
        return
    from harness.metrics import MetricsServer

    with MetricsServer(metrics_host, metrics_port) as server:
        run_collector(dsn, match, out, interval=interval, duration=duration, on_sample=server.publish)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
def report(run_dir: Path) -> None:
    """Render RUN_DIR/report.html again from the run folder alone."""
    from harness.report import render_report

    if not (run_dir / "run.json").is_file():
        raise UsageError(f"{run_dir} is not a drainwatch run folder (no run.json)", hint="pass a folder under reports/")
    console.print(f"report: {render_report(run_dir)}")


@cli.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Where to write the page (default: RUN_B/compare.html).")
@click.pass_context
def compare_cmd(ctx: click.Context, run_a: Path, run_b: Path, out: Path | None) -> None:
    """Compare run B (after a change) with run A (before): print the figures, write compare.html.

    \b
    Exit code 1 when B is worse than A on a leak figure (verdict, leaked connections, time
    back to baseline, idle in transaction, the probe), 0 otherwise, 2 for bad input.
    """
    from harness.compare import print_comparison, write_compare

    comparison, page = write_compare(run_a, run_b, out)
    print_comparison(console, comparison, page)
    ctx.exit(comparison.exit_code)


@cli.command("forecast")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--prod-rps", type=float, required=True, envvar=_env("PROD_RPS"), help="Forecast: production requests per second.")
@click.option("--prod-disconnect", default="0", envvar=_env("PROD_DISCONNECT"), help="Forecast: share of requests whose client hangs up (0.5%).")
@click.option("--prod-timeout", default="0", envvar=_env("PROD_TIMEOUT"), help="Forecast: share of requests that hit a deadline.")
@click.option("--prod-error", default="0", envvar=_env("PROD_ERROR"), help="Forecast: share of requests whose handler fails.")
@click.option("--prod-pool", type=int, envvar=_env("PROD_POOL"), help="Forecast: production pool size (default: the target's pool limit).")
def forecast_cmd(run_dir: Path, **opts: object) -> None:
    """Predict from a finished run when production's pool runs out (the 2am outage).

    \b
    drainwatch forecast reports/RUN --prod-rps 40 --prod-disconnect 0.5% --prod-pool 30
    """
    from harness.forecast import Production, from_run_dir

    if not opts["prod_pool"]:
        target = (read_json(run_dir / "run.json").get("target") or {}) if (run_dir / "run.json").is_file() else {}
        opts["prod_pool"] = target.get("pool_limit")
    if not opts["prod_pool"]:
        raise UsageError("the pool size is unknown", hint="give --prod-pool, e.g. 30 for pool_size=20, max_overflow=10")
    result = from_run_dir(run_dir, Production(float(opts["prod_rps"]), _shares(opts), int(opts["prod_pool"])))  # type: ignore[arg-type]
    console.print(result.sentence)
    for kind, rate in result.rates.items():
        console.print(f"  {kind:<10} {rate['leaked']:>4} leaked / {rate['requests']:>6} requests"
                      f" = {rate['rate'] * 1000:.1f} per 1,000 (95 %: {rate['low'] * 1000:.1f}–{rate['high'] * 1000:.1f})")
    console.print("assumptions: " + "; ".join(result.assumptions))


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default="drainwatch.toml")
def init(path: Path) -> None:
    """Write a commented starter config to PATH (drainwatch.toml)."""
    from harness.configfile import STARTER

    if path.exists():
        raise UsageError(f"{path} already exists", hint="edit it, or give another file name")
    path.write_text(STARTER)
    console.print(f"wrote {path}: edit the target, database and endpoints, then `drainwatch run`")


@cli.command()
@click.option("--master", "master_host", required=True, help="Host of the Locust master (a `drainwatch run --workers N` or `locust --master`).")
@click.option("--master-port", type=int, default=5557, show_default=True)
@click.option("-f", "--locustfile", type=click.Path(exists=True, path_type=Path), help="Default: the mixed chaos scenario.")
def worker(master_host: str, master_port: int, locustfile: Path | None) -> None:
    """Join a Locust master as a worker (Locust's own distribution; nothing home-made)."""
    import os

    from harness.load import scenario_file, worker_argv

    argv = worker_argv(locustfile or scenario_file("mixed"), master_host, master_port)
    os.execv(argv[0], argv)


@cli.command("demo-service")
@click.option("--variant", type=click.Choice(["leaky", "fixed"]), default="leaky", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--dsn", envvar="DRAINWATCH_DEMO_DSN", required=True, help="PostgreSQL for the demo (or DRAINWATCH_DEMO_DSN).")
@click.option("--cancel-on-disconnect", is_flag=True, default=None, envvar="DRAINWATCH_DEMO_CANCEL_ON_DISCONNECT",
              help="Cancel plain handlers when their client hangs up (only while the response is in flight).")
def demo_service_cmd(variant: str, host: str, port: int, dsn: str, cancel_on_disconnect: bool | None) -> None:
    """Serve the bundled demo service alone (uvicorn)."""
    from demo_service.__main__ import serve
    from harness.config import check_port_free

    check_dsn(dsn)
    check_port_free(port, "--port", host)
    serve(variant, dsn, host, port, cancel_on_disconnect)


def main() -> None:
    """Entry point: the one error boundary."""
    verbose = "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]
    try:
        code = cli.main(prog_name="drainwatch", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "drainwatch"
        err_console.print(f"error: {exc.format_message()} — hint: see `{command} --help`", soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except click.Abort:
        sys.exit(130)
    except DrainwatchError as exc:
        if verbose:
            log.exception("details")
        err_console.print(f"error: {exc}" + (f" — hint: {exc.hint}" if exc.hint else ""), soft_wrap=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        sys.exit(exc.exit_code)
