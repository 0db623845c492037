"""The ``drainwatch`` command group and its small commands; ``run`` has a module of its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from drainwatch import __version__
from drainwatch.cli.boundary import console
from drainwatch.cli.run_options import DURATION, check, prod_options, run, shares
from drainwatch.errors import DrainwatchError, UsageError
from drainwatch.plan import Match, check_dsn, check_port_free, check_production, check_writable
from drainwatch.rundir import read_json


def one_line(text: str) -> str:
    """``text`` with what a terminal would break or hide (a newline typed into a path) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Every error leaves a command as one line, whatever the user typed into the value it names."""
    try:
        yield
    except click.UsageError as exc:
        exc.message = one_line(exc.message)  # type: ignore[misc]  # Final in click's stub; it is what is printed
        raise
    except DrainwatchError as exc:
        exc.args = (one_line(str(exc)),)
        exc.hint = one_line(exc.hint)
        raise


class Commands(click.Group):
    """The group: its own options and each command's, parsed and run with one-line errors."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _one_line_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


cli.add_command(run)
cli.add_command(check)


@cli.command()
@click.option(
    "--dsn", envvar="DRAINWATCH_DSN", required=True, metavar="DSN", help="The PostgreSQL to watch (or DRAINWATCH_DSN)."
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=Path("samples.csv"),
    show_default=True,
    help="CSV file to append samples to.",
)
@click.option("--interval", type=DURATION, default="250ms", show_default=True, help="Sampling interval (50ms..60s).")
@click.option("--duration", type=DURATION, default=None, help="Stop after this long (default: until SIGINT/SIGTERM).")
@click.option("--app-name", metavar="PATTERN", help="Only backends whose application_name is LIKE this.")
@click.option("--usename", help="Only backends of this database user.")
@click.option("--datname", help="Only backends connected to this database.")
@click.option("--client-addr", help="Only backends from this client address.")
@click.option(
    "--client-pid-file",
    type=click.Path(path_type=Path),
    help="Only backends whose client is the process (tree) whose pid this file holds; re-read every sample.",
)
@click.option(
    "--metrics-port", type=int, help="Also serve the latest sample for Prometheus at http://HOST:PORT/metrics."
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port (0.0.0.0 in a container).",
)
def collect(
    dsn: str,
    out: Path,
    interval: float,
    duration: float | None,
    app_name: str | None,
    usename: str | None,
    datname: str | None,
    client_addr: str | None,
    client_pid_file: Path | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Sample the target's connections in pg_stat_activity into a CSV (the sidecar, alone).

    One connection of its own, in autocommit, excluded from the counts; one line per
    sample, flushed as it is taken; reconnects with backoff if PostgreSQL restarts.
    """
    from drainwatch.sample.collector import run_collector

    check_dsn(dsn)
    if not 0.05 <= interval <= 60:
        raise UsageError(f"--interval {interval}s is outside 50ms..60s", hint="the default 250ms samples at 4 Hz")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder", hint="give --out the CSV file to append to, like samples.csv")
    check_writable(out.parent)  # before the first connection: the samples have to go somewhere
    if metrics_port is not None:
        check_port_free(metrics_port, "--metrics-port", metrics_host)
    match = Match(
        application_name=app_name,
        usename=usename,
        datname=datname,
        client_addr=client_addr,
        client_pid_file=str(client_pid_file) if client_pid_file else None,
    )
    if metrics_port is None:
        run_collector(dsn, match, out, interval=interval, duration=duration)
        return
    from drainwatch.sample.metrics import MetricsServer

    with MetricsServer(metrics_host, metrics_port) as server:
        run_collector(dsn, match, out, interval=interval, duration=duration, on_sample=server.publish)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
def report(run_dir: Path) -> None:
    """Render RUN_DIR/report.html again from the run folder alone."""
    from drainwatch.report import render_report
    from drainwatch.run.leftovers import if_killed

    if not (run_dir / "run.json").is_file():
        raise UsageError(f"{run_dir} is not a drainwatch run folder (no run.json)", hint="pass a folder under reports/")
    if said := if_killed(run_dir):  # its drainwatch was killed (-9): say so, and end what it left
        click.echo(said, err=True)
    try:
        page = render_report(run_dir)
    except OSError as exc:
        raise UsageError(
            f"cannot write {run_dir / 'report.html'} ({exc.strerror or exc})",
            hint="make the run folder writable, or copy it somewhere that is",
        ) from exc
    console.print(f"report: {page}")


@cli.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", type=click.Path(path_type=Path), help="Where to write the page (default: RUN_B/compare.html)."
)
@click.pass_context
def compare_cmd(ctx: click.Context, run_a: Path, run_b: Path, out: Path | None) -> None:
    """Compare run B (after a change) with run A (before): print the figures, write compare.html.

    \b
    Exit code 1 when B is worse than A on a leak figure (verdict, leaked connections, time
    back to baseline, idle in transaction, the probe), 0 otherwise, 2 for bad input.
    """
    from drainwatch.report.compare import print_comparison, write_compare

    comparison, page = write_compare(run_a, run_b, out)
    print_comparison(console, comparison, page)
    ctx.exit(comparison.exit_code)


@cli.command("forecast")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@prod_options(required=True)
def forecast_cmd(
    run_dir: Path,
    prod_rps: float,
    prod_pool: int | None,
    prod_instances: int,
    prod_max_connections: int | None,
    **kind_shares: str,
) -> None:
    """Predict from a finished run when production's pool runs out (the 2am outage).

    \b
    drainwatch forecast reports/RUN --prod-rps 40 --prod-disconnect 0.5% --prod-pool 30
    """
    from drainwatch.report.forecast import Production, from_run_dir

    rps, instances, server = prod_rps, prod_instances, prod_max_connections
    check_production(rps, prod_pool, instances, server)
    pool = prod_pool or _pool_limit(run_dir)
    if not pool and not server:
        raise UsageError(
            "the pool size is unknown",
            hint="give --prod-pool, e.g. 30 for pool_size=20, max_overflow=10 (or --prod-max-connections)",
        )
    prod = Production(rps, shares(kind_shares), pool, instances=instances, server=server)
    result = from_run_dir(run_dir, prod)
    console.print(result.sentence)
    for kind, rate in result.rates.items():
        console.print(
            f"  {kind:<10} {rate['leaked']:>4} leaked / {rate['requests']:>6} requests"
            f" = {rate['rate'] * 1000:.1f} per 1,000 (95 %: {rate['low'] * 1000:.1f}–{rate['high'] * 1000:.1f})"
        )
    console.print("assumptions: " + "; ".join(result.assumptions))


def _pool_limit(run_dir: Path) -> int | None:
    """The target's pool limit as the run recorded it, if it did."""
    try:
        record = read_json(run_dir / "run.json")
    except (OSError, ValueError):
        return None
    target = record.get("target") if isinstance(record, dict) else None
    limit = target.get("pool_limit") if isinstance(target, dict) else None
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default="drainwatch.toml")
def init(path: Path) -> None:
    """Write a commented starter config to PATH (drainwatch.toml)."""
    from drainwatch.configfile import STARTER

    if path.exists():
        raise UsageError(f"{path} already exists", hint="edit it, or give another file name")
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(STARTER)
    except FileExistsError as exc:
        raise UsageError(f"{path} already exists", hint="edit it, or give another file name") from exc
    except OSError as exc:
        raise UsageError(
            f"cannot write {path} ({exc.strerror or exc})", hint="give a file name in a folder that exists"
        ) from exc
    console.print(f"wrote {path}: edit the target, database and endpoints, then `drainwatch run`")


@cli.command()
@click.option(
    "--master",
    "master_host",
    required=True,
    help="Host of the Locust master (a `drainwatch run --workers N` or `locust --master`).",
)
@click.option("--master-port", type=int, default=5557, show_default=True)
@click.option(
    "-f", "--locustfile", type=click.Path(exists=True, path_type=Path), help="Default: the mixed chaos scenario."
)
def worker(master_host: str, master_port: int, locustfile: Path | None) -> None:
    """Join a Locust master as a worker (Locust's own distribution; nothing home-made)."""
    import os

    from drainwatch.provision.locust import scenario_file, worker_argv

    argv = worker_argv(locustfile or scenario_file("mixed"), master_host, master_port)
    os.execv(argv[0], argv)


@cli.command("demo-service")
@click.option("--variant", type=click.Choice(["leaky", "fixed"]), default="leaky", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--dsn", envvar="DRAINWATCH_DEMO_DSN", required=True, help="PostgreSQL for the demo (or DRAINWATCH_DEMO_DSN)."
)
@click.option(
    "--cancel-on-disconnect",
    is_flag=True,
    default=None,
    envvar="DRAINWATCH_DEMO_CANCEL_ON_DISCONNECT",
    help="Cancel plain handlers when their client hangs up (only while the response is in flight).",
)
def demo_service_cmd(variant: str, host: str, port: int, dsn: str, cancel_on_disconnect: bool | None) -> None:
    """Serve the bundled demo service alone (uvicorn)."""
    from drainwatch.demo_service.__main__ import serve
    from drainwatch.plan import check_port_free

    check_dsn(dsn)
    check_port_free(port, "--port", host)
    serve(variant, dsn, host, port, cancel_on_disconnect)
