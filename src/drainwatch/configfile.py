"""``drainwatch.toml`` (or ``[tool.drainwatch]`` in a pyproject): run options from a file.

The file fills only what the command line and ``DRAINWATCH_*`` variables leave unset.
Its keys map onto the ``run`` command's options, except the traffic description
(``[[endpoints]]`` and ``[chaos.*]``), which becomes environment for the Locust scenarios
(see ``scenarios/chaos.py``). Unknown keys are errors that name the nearest valid key.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

from drainwatch.errors import UsageError

# "section.key" in the file → option name of `drainwatch run`
OPTION_KEYS = {
    "target.url": "target_url", "target.variant": "variant", "target.pool_view": "pool_view",
    "target.pool_limit": "pool_limit", "target.command": "serve", "target.setup": "setup",
    "target.cwd": "serve_cwd", "target.database_env": "database_env", "target.env": "serve_env",
    "target.headers": "header_table", "target.no_restart": "no_restart", "target.dev_mode": "dev_mode", "target.no_instrument": "no_instrument",
    "target.via_pgbouncer": "via_pgbouncer", "target.pgbouncer": "pgbouncer",
    "database.dsn": "dsn", "database.embedded_max_connections": "embedded_max_connections", "database.match.application_name": "app_name", "database.match.usename": "usename",
    "database.match.datname": "datname", "database.match.client_addr": "client_addr",
    "load.users": "users", "load.spawn_rate": "spawn_rate", "load.rate": "rate", "load.warmup": "warmup", "load.baseline": "baseline",
    "load.duration": "duration", "load.settle": "settle", "load.interval": "interval", "load.mix": "mix",
    "load.locustfile": "locustfile", "load.workers": "workers", "load.isolate": "isolate",
    "probe.path": "probe_path", "probe.timeout": "probe_timeout", "probe.headers": "probe_headers",
    "verdict.tolerance": "tolerance",
    "output.out": "out",
}  # fmt: skip
PATH_OPTIONS = {"locustfile", "out", "serve_cwd"}
TABLE_OPTIONS = {"target.env", "target.headers", "probe.headers"}  # string tables, kept whole
ENDPOINT_KEYS = {"method", "path", "headers", "json", "weight"}
CHAOS_KEYS = {
    "disconnect": {"request", "headers", "json", "after_ms", "after_chunks"},
    "timeout": {"request", "headers", "json", "expect", "client_timeout_ms"},
    "error": {"request", "headers", "json", "expect"},
}
CHAOS_TOP = {"client_timeout"}


def find_config(cwd: Path) -> Path | None:
    """``drainwatch.toml`` here, else a ``pyproject.toml`` here with a ``[tool.drainwatch]`` table."""
    if (cwd / "drainwatch.toml").is_file():
        return cwd / "drainwatch.toml"
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None  # not ours to judge: only a [tool.drainwatch] table makes it a config
        if isinstance(tool, dict) and "drainwatch" in tool:
            return pyproject
    return None


def load(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(option values by option name, environment for Locust) from a config file.

    Raises UsageError for a missing file, bad TOML or an unknown key.
    """
    data = _read(path)
    _check_values(path, data)
    options: dict[str, Any] = {}
    env: dict[str, str] = {}
    for key, value in _flatten(data):
        if key in OPTION_KEYS:
            options[OPTION_KEYS[key]] = _option(path, key, value)
        elif key == "endpoints":
            if not isinstance(value, list):
                raise UsageError(
                    f"endpoints in {path.name} must be a list of tables, not {_kind(value)}",
                    hint='write [[endpoints]] sections, each with method = "GET", path = "/items"',
                )
            env["DRAINWATCH_STEADY"] = json.dumps([_endpoint(path, item) for item in value])
        elif key.startswith("chaos."):
            env.update(_chaos(path, key, value))
        else:
            _unknown(path, key)
    return options, env


def _read(path: Path) -> dict[str, Any]:
    """The file's drainwatch table: the whole TOML file, or [tool.drainwatch] of a pyproject.toml."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(
            f"config file {path} does not exist", hint="check --config, or write one with `drainwatch init`"
        ) from exc
    except IsADirectoryError as exc:
        raise UsageError(f"config file {path} is a folder", hint="give --config the TOML file itself") from exc
    except OSError as exc:
        raise UsageError(
            f"config file {path} cannot be read ({exc.strerror or exc})", hint="give --config a readable file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not text (UTF-8): {exc.reason} at byte {exc.start}", hint="save it as UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}", hint="fix the line it names") from exc
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        section = tool.get("drainwatch", {}) if isinstance(tool, dict) else None
        if not isinstance(section, dict):
            raise UsageError(
                f"[tool.drainwatch] in {path} is not a table", hint="write it as a [tool.drainwatch] section"
            )
        data = section
    return data


def _option(path: Path, key: str, value: Any) -> Any:
    """One option's value from the file, as its command-line option takes it."""
    name = OPTION_KEYS[key]
    if key not in TABLE_OPTIONS and key != "load.mix" and not isinstance(value, (str, int, float)):
        raise UsageError(
            f"{key} in {path.name} must be a single value, not {_kind(value)}",
            hint='write a number, a string or true/false, like users = 20 or warmup = "10s"',
        )
    if name == "mix" and isinstance(value, dict):
        value = ",".join(f"{kind}={weight}" for kind, weight in value.items())
    if name in PATH_OPTIONS:
        value = str((path.parent / str(value)).resolve())
    if key in TABLE_OPTIONS:
        if not isinstance(value, dict):
            raise UsageError(f"{key} in {path.name} must be a table", hint=f'write {key} = {{ NAME = "value" }}')
        value = {str(k): str(v) for k, v in value.items()}
    return value


def _kind(value: Any) -> str:
    kinds = {dict: "a table", list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return kinds.get(type(value), "a date or time")


def _check_values(path: Path, data: Any, key: str = "") -> None:
    """Raise UsageError for what no drainwatch setting can hold: a date or time, a NUL character."""
    if isinstance(data, dict):
        for name, value in data.items():
            _check_values(path, name, key)
            _check_values(path, value, f"{key}.{name}" if key else name)
    elif isinstance(data, list):
        for value in data:
            _check_values(path, value, key)
    elif isinstance(data, str):
        if "\x00" in data:
            raise UsageError(f"{key or 'a key'} in {path.name} holds a NUL character", hint="remove the \\u0000")
    elif not isinstance(data, (int, float)):
        raise UsageError(
            f"{key} in {path.name} is a TOML date or time, which no setting takes",
            hint='quote it if it is meant as text, like "2024-01-01"',
        )


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full not in ("load.mix", *TABLE_OPTIONS) and not full.startswith("chaos."):
            items += _flatten(value, full + ".")
        else:
            items.append((full, value))
    return items


def _valid_keys() -> list[str]:
    chaos = [f"chaos.{kind}.{key}" for kind, keys in CHAOS_KEYS.items() for key in keys]
    return [*OPTION_KEYS, "endpoints", *chaos, *(f"chaos.{key}" for key in CHAOS_TOP)]


def _unknown(path: Path, key: str) -> None:
    near = difflib.get_close_matches(key, _valid_keys(), n=1, cutoff=0.5)
    raise UsageError(
        f"unknown key {key!r} in {path.name}",
        hint=f"did you mean {near[0]!r}?" if near else "see `drainwatch init` for the keys a config can hold",
    )


def _endpoint(path: Path, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise UsageError(
            f"each [[endpoints]] entry in {path.name} must be a table", hint='write method = "GET", path = "/items"'
        )
    for key in item:
        if key not in ENDPOINT_KEYS:
            _unknown(path, f"endpoints.{key}")
    if "path" not in item:
        raise UsageError(f"an [[endpoints]] entry in {path.name} has no path", hint='add path = "/items"')
    return {"method": str(item.get("method", "GET")).upper(), **{k: v for k, v in item.items() if k != "method"}}


def _chaos(path: Path, key: str, value: Any) -> dict[str, str]:
    kind = key.split(".", 1)[1]
    if kind in CHAOS_TOP:
        return {"DRAINWATCH_REQUEST_TIMEOUT": str(value)}
    if kind not in CHAOS_KEYS or not isinstance(value, dict):
        _unknown(path, key)
    for sub in value:
        if sub not in CHAOS_KEYS[kind]:
            _unknown(path, f"{key}.{sub}")
    env: dict[str, str] = {}
    name = f"DRAINWATCH_{kind.upper()}"
    if "request" in value:
        method, _, target = str(value["request"]).partition(" ")
        env[name] = json.dumps(
            {
                "method": method.upper(),
                "path": target or "/",
                "headers": value.get("headers", {}),
                **({"json": value["json"]} if "json" in value else {}),
            }
        )
    if "after_ms" in value:
        env["DRAINWATCH_DISCONNECT_AFTER_MS"] = str(value["after_ms"])
    if "after_chunks" in value:
        env["DRAINWATCH_DISCONNECT_AFTER_CHUNKS"] = str(value["after_chunks"])
    if "client_timeout_ms" in value:
        env["DRAINWATCH_TIMEOUT_CLIENT_MS"] = str(value["client_timeout_ms"])
    if "expect" in value:
        expect = value["expect"]
        if not isinstance(expect, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in expect):
            raise UsageError(
                f"{key}.expect in {path.name} must be a list of HTTP statuses", hint="write expect = [500]"
            )
        env[f"{name}_EXPECT"] = ",".join(str(code) for code in expect)
    return env


STARTER = """\
# drainwatch configuration. Command-line options and DRAINWATCH_* variables override it.
# `drainwatch run` finds it in the current folder (or [tool.drainwatch] in pyproject.toml);
# `drainwatch check` tries every request below once, without a run.

[target]
# drainwatch starts your service: {port} is a free port, $DATABASE_URL its database
# (an embedded PostgreSQL unless [database] dsn is given).
command = "uvicorn app.main:app --port {port}"
# setup = "alembic upgrade head"     # run once, before the service starts
# env = { APP_ENV = "test" }
# cwd = "."
# database_env = "DATABASE_URL"      # the variable that hands the service its database
# headers = { Authorization = "Bearer test-token" }   # sent with every request and the probe
# url = "http://127.0.0.1:8000"      # or: a service already running (then [database] dsn is needed)
# pool_view = "/_drainwatch/pool"    # if your app mounts drainwatch.instrument's pool view
# pool_limit = 30                     # pool_size + max_overflow, drawn on the chart

# [database]
# The database your service uses, when it is not the embedded one. Keep the password out of
# this file: PGPASSWORD or ~/.pgpass.
# dsn = "postgresql://monitor@127.0.0.1:5432/app"
# [database.match]                   # which backends are your service's (found by socket when
# application_name = "myapp%"        # drainwatch can see its process; otherwise needed)

[load]
users = 20
spawn_rate = 20
warmup = "10s"                        # steady traffic: pools fill to their working size
baseline = "5s"                       # quiet: its connection count is the baseline
duration = "30s"                      # the chaos load
settle = "20s"                        # longest wait for connections to come back
mix = { steady = 4, disconnect = 2, timeout = 2, error = 1 }
# locustfile = "my_locustfile.py"    # your own load phase instead of the mix
# workers = 2                         # Locust master + N local workers

# Steady traffic: ordinary requests that should succeed, picked by weight.
[[endpoints]]
method = "GET"
path = "/items"
weight = 3

[[endpoints]]
method = "POST"
path = "/orders"
json = { item = "book" }
weight = 1

[chaos]
client_timeout = 5                    # seconds before any plain request counts as failed

[chaos.disconnect]                    # the client hangs up: on any endpoint (default: the first above)
request = "GET /items"
after_ms = 0                          # 0: before the first byte; or after_chunks = 3 mid-stream

[chaos.timeout]                       # a deadline fires: the client's own...
request = "GET /items"
client_timeout_ms = 50
# expect = [504]                      # ...or a server-side one that answers 504

[chaos.error]                         # a request whose handler raises mid-transaction
request = "POST /orders?fail=1"
expect = [500, 502]

[probe]
path = "/items"                       # must reach the database (default: the first endpoint)
# headers = { Authorization = "Bearer test-token" }
timeout = "5s"

[verdict]
tolerance = 0                         # connections over baseline still accepted as PASS
"""
