"""Bad input, fuzzed (issue 16): every mistake a user can make ends in one line and exit 2.

Property-based (hypothesis): bad values for every option of ``run`` and ``check``, ``collect``,
``compare``, ``forecast``, ``report`` and ``init``, bad ``drainwatch.toml`` files, and corrupt run
folders. Every refusal is exactly one stderr line ``error: … — hint: …``, exit 2, no traceback,
nothing created. Where validity is hard to predict the property is weaker: drainwatch either
accepts the input or refuses it so, and never does anything else (an exit 3, a traceback).

No case ever starts anything. The commands run in-process through the real error boundary
(``drainwatch.cli.boundary.main``), with the places that would start a run, a check or the
collector replaced by a tripwire: reaching one means the input was accepted. A few cases go
through ``python -m drainwatch`` to pin the output at the real process boundary.

Profiles: "ci" (the default: derandomized, a fixed number of examples per test) and "long"
(``DRAINWATCH_FUZZ=long``: twenty times as many, randomized).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import logging
import math
import os
import shutil
import string
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drainwatch.cli.commands import one_line
from drainwatch.errors import UsageError
from tests.helpers import drainwatch
from tests.rundirs import make_rundir

LONG = os.environ.get("DRAINWATCH_FUZZ") == "long"
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,  # nothing written into the repository (.hypothesis/)
    "suppress_health_check": list(HealthCheck),
    "print_blob": False,
}
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=1200, derandomize=False, **_COMMON)
PROFILE = settings.get_profile("long" if LONG else "ci")


def fuzz(examples: int) -> settings:
    """This test's share of the profile: ``examples`` in CI, twenty times as many in the long one."""
    return settings(PROFILE, max_examples=examples * 20 if LONG else examples)


# ---------------------------------------------------------------------------------------------
# Running a command in-process, through the real boundary, with tripwires where anything starts


class WouldStart(BaseException):  # noqa: N818 - not an Exception: the boundary must let it through
    """Raised where drainwatch would start a run, a check or the collector: the input was accepted."""


TRIPWIRES = (
    "drainwatch.run.execute.execute",
    "drainwatch.run.execute.check",
    "drainwatch.sample.collector.run_collector",
    "drainwatch.sample.metrics.MetricsServer",
)


def _tripwire(name: str) -> Any:
    def trip(*args: Any, **kwargs: Any) -> Any:
        raise WouldStart(name)

    return trip


@dataclass
class Ended:
    args: tuple[str, ...]
    code: int | None  # None: accepted (a tripwire was reached)
    out: str
    err: str
    started: str | None

    def __str__(self) -> str:
        return f"drainwatch {' '.join(map(repr, self.args))}\nexit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Ended:
    """``drainwatch ARGS`` in-process: exit code, stdout and stderr as a user would see them."""
    from drainwatch.cli import boundary, cli

    out, err = io.StringIO(), io.StringIO()
    # What `logging.basicConfig` does in a real process: warnings reach stderr too.
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRAINWATCH_")} | (env or {})
    code: int | None = None
    started: str | None = None
    root = logging.getLogger()
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, clean, clear=True))
        stack.enter_context(mock.patch.object(sys, "argv", ["drainwatch", *args]))
        for name in TRIPWIRES:
            stack.enter_context(mock.patch(name, _tripwire(name)))
        stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        root.addHandler(handler)
        stack.callback(root.removeHandler, handler)
        try:
            boundary.main(cli)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except WouldStart as exc:
            started = str(exc)
    ended = Ended(args, code, out.getvalue(), err.getvalue(), started)
    if code == 3:  # a malfunction: show its traceback, and do not leave the file behind
        kept = Path(ended.err.rsplit("the traceback is in ", 1)[-1].strip())
        if kept.is_file() and kept.parent == Path(tempfile.gettempdir()):
            ended.err += "\n" + kept.read_text()
            kept.unlink()
    return ended


def assert_one_line(ended: Ended) -> None:
    """Refused as the contract says: exit 2, one line naming the cause and the fix, no traceback."""
    assert ended.started is None, f"accepted (it would start {ended.started}):\n{ended}"
    assert ended.code == 2, str(ended)
    lines = ended.err.splitlines()
    assert len(lines) == 1, str(ended)
    assert lines[0].startswith("error: ") and " — hint: " in lines[0], str(ended)
    cause, hint = lines[0].removeprefix("error: ").split(" — hint: ", 1)
    assert cause.strip() and hint.strip(), str(ended)
    assert "Traceback" not in ended.err + ended.out, str(ended)


def assert_accepted_or_one_line(ended: Ended) -> None:
    """Where validity is hard to predict: accepted, or refused in one line; never anything else."""
    if ended.started is None:
        assert_one_line(ended)


def tree(folder: Path) -> list[str]:
    """Everything under ``folder``: what a case may not add to."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@contextlib.contextmanager
def workdir(base: Path) -> Iterator[Path]:
    """A fresh folder per example, removed afterwards."""
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def prepare(work: Path) -> dict[str, str]:
    """The paths a bad path can point at, inside ``work``: each of them exists or not, as named."""
    (work / "a-file").write_text("not a folder\n")
    (work / "a-folder").mkdir()
    (work / "no-user.py").write_text("print('hello')\n")
    (work / "binary.toml").write_bytes(b"\xff\xfe\x00bad = \x80\n")
    (work / "broken.toml").write_text("[load\nusers = \n")
    return {
        "file": str(work / "a-file"),
        "folder": str(work / "a-folder"),
        "missing": str(work / "missing" / "deeper"),
        "under-file": str(work / "a-file" / "inside"),
        "no-user": str(work / "no-user.py"),
        "binary": str(work / "binary.toml"),
        "broken": str(work / "broken.toml"),
    }


# ---------------------------------------------------------------------------------------------
# Values


# What argv can carry: anything but NUL, and bytes that are not UTF-8 arrive as lone surrogates.
ODD = ["\u202e", "🙂", "\u200b", "Ω", "\n", "\r\n", "\t", " ", "１２", "\udcff", "\udc80x", "é", "%", "{port}", "'"]
argv_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24),
    st.sampled_from(ODD),
    st.lists(st.sampled_from(ODD + list("aZ09/:=@,.-+ ")), max_size=8).map("".join),
)
no_digits = st.text(
    st.characters(blacklist_categories=("Cs", "Nd", "No", "Nl"), blacklist_characters="\x00"), max_size=12
)

DURATION_OPTIONS = ["--warmup", "--baseline", "--duration", "-t", "--settle", "--interval", "--probe-timeout"]
DURATION_OPTIONS += ["--checkpoint-every"]
bad_duration = st.one_of(
    st.sampled_from(
        ["0", "0s", "-1", "-5s", "-0.5m", "nan", "NaN", "inf", "-inf", "+inf", "infinity", "1e309", "1e309s"]
        + ["soon", "5x", "5 days", "1m-30s", "s", "ms", "", "  ", "1..5s", "1e3s", "0x10", "5s5", "--1s", "1,5s"]
    ),
    st.integers(max_value=0).map(str),
    st.floats(max_value=0, allow_nan=False).map(lambda f: f"{f:f}s"),
    no_digits,
)
bad_interval = st.one_of(bad_duration, st.sampled_from(["10ms", "49ms", "61s", "2m", "1h"]))
not_a_number = st.one_of(
    st.sampled_from(["abc", "", " ", "1.5.2", "0x10", "½", "--", "1,0", "\udcff", "one", "5 5"]),
    no_digits,
)
not_whole = st.one_of(not_a_number, st.sampled_from(["1.5", "1e3", "nan", "inf"]))
BAD_WHOLE = {
    "--users": st.integers(max_value=0),
    "-u": st.integers(max_value=0),
    "--workers": st.integers(max_value=-1) | st.integers(min_value=65),
    "--tolerance": st.integers(max_value=-1),
    "--pool-limit": st.integers(max_value=0),
    "--metrics-port": st.integers(max_value=0) | st.integers(min_value=65536),
    "--embedded-max-connections": st.integers(max_value=9) | st.integers(min_value=10001),
    "--prod-pool": st.integers(max_value=-1),
}
BAD_REAL = {
    "--spawn-rate": st.sampled_from(["0", "-1", "-0.5", "nan", "inf", "-inf", "1e309"]),
    "-r": st.sampled_from(["0", "-20", "nan"]),
    "--prod-rps": st.sampled_from(["0", "-1", "-0.5", "nan", "inf", "-inf", "1e309"]),
}
bad_share = st.one_of(
    st.sampled_from(["abc", "", "%", "-1%", "101%", "2", "1.01", "nan", "inf", "1e309%", "50%%", "%50", "0.5 %%"]),
    st.floats(min_value=1.0001, max_value=1e300).map(str),
    st.floats(max_value=-1e-9, min_value=-1e300).map(str),
)
bad_port = st.one_of(
    st.sampled_from(["notaport", "99999", "0", "65536", "-1", "5432x", "１２", "54 32", "5432,x"]),
    st.integers(min_value=65536).map(str),
)
not_an_option = st.text(string.ascii_lowercase + "-", min_size=1, max_size=10)
bad_dsn = st.one_of(
    st.sampled_from(
        ["nonsense", "   ", "postgresql://[::1", "host='unterminated", "mysql://h/db", "postgresql://%zz@h/db"]
        + ["postgresql://h/db?sslmode", "=", "host", "\udcff", "host=\udcff", "postgresql://h/\udcff", "port=="]
    ),
    st.builds("postgresql://u@127.0.0.1:{}/db".format, bad_port),
    st.builds("postgres://u@[::1]:{}/db".format, bad_port),
    st.builds("host=127.0.0.1 port={}".format, bad_port.filter(lambda p: " " not in p)),
    st.builds("host=h x_{}=1".format, st.text(string.ascii_lowercase, min_size=1, max_size=8)),
    st.builds("postgresql://h/db?x_{}=1".format, st.text(string.ascii_lowercase, min_size=1, max_size=8)),
    st.builds("postgresql://u%{}@h/db".format, st.sampled_from(["", "z", "zz", "g0", "0"])),
    st.text(string.ascii_letters, min_size=1, max_size=12),  # a word, no "=": not a connection string
)
bad_url = st.one_of(
    st.sampled_from(
        ["ftp://x", "x", "http://", "http:///path", "http://:80", "http://[::1", "http://h:99999", "http://h:x"]
        + ["http://h:-1", "//h", "localhost:8000", "mailto:a@b", "http//h", "http://h h/", "http://\udcff", "file:///x"]
        + ["HTTP:/x", "https://?q", "http://h:0", "http://[nope]:80"]
    ),
    st.builds("{}://127.0.0.1:8000".format, st.text(string.ascii_lowercase, min_size=1, max_size=6)).filter(
        lambda u: not u.startswith(("http:", "https:"))
    ),
    st.builds("http://127.0.0.1:{}".format, bad_port.filter(lambda p: p != "")),
)
bad_fault = st.one_of(
    st.sampled_from(
        ["pg-restart", "@20s", "pg-restart@", "pg-restart@nan", "pg-restart@-1s", "pg-restart@1e309", "PG-RESTART@1s"]
        + ["pause-target@1s+0s", "pause-target@1s+nan", "pause-target@1s+", "pause-target@1s+1e309s"]
        + ["terminate-backends@soon", "pg_restart@1s", "pg-restart@@1s", "pause-target@1s+-2s", ""]
        + ["pg-pause@1s+0s", "pg-pause@1s+nan", "pg-pause@", "pg_pause@1s"]
    ),
    st.builds("{}@5s".format, st.text(string.ascii_lowercase + "-", min_size=1, max_size=12)).filter(
        lambda f: f.split("@")[0] not in ("pg-restart", "terminate-backends", "pause-target", "pooler-kill", "pg-pause")
    ),
    st.builds("terminate-backends@{}".format, bad_duration.filter(lambda d: "@" not in d and "+" not in d)),
)
KINDS = ["steady", "disconnect", "timeout", "error"]
bad_mix_part = st.one_of(
    st.builds("{}={}".format, st.text(string.ascii_letters + "_- ", max_size=10), st.integers(0, 5)).filter(
        lambda p: p.split("=")[0].strip() not in KINDS
    ),
    st.builds(
        "{}={}".format,
        st.sampled_from(KINDS),
        st.sampled_from(["x", "1.5", "nan", "-1", "1e3", "0x1", "--1", "inf", "½", "1 2"]) | st.integers(max_value=-1),
    ),
)
good_mix_part = st.builds("{}={}".format, st.sampled_from(KINDS), st.integers(0, 9))
bad_mix = st.one_of(
    st.tuples(st.lists(good_mix_part, max_size=2), bad_mix_part, st.lists(good_mix_part, max_size=2)).map(
        lambda t: ",".join([*t[0], t[1], *t[2]])
    ),
    st.lists(st.builds("{}=0".format, st.sampled_from(KINDS)), min_size=1, max_size=4).map(",".join),
    st.sampled_from([",", " , ", "=", "=1", "steady=0"]),
)
token_breakers = st.sampled_from(list(' "(),/:;<=>?@[\\]{}é\u00a0\udcff\x7f\t') + ["\r\n", "🙂"])
bad_header = st.one_of(
    st.sampled_from(["no colon", ": value", " : v", "", ":", "X-é: v", "X: é", "X: a\r\nb", "X\nY: v", "X: \udcff"]),
    st.builds("X{}Y: v".format, token_breakers),
    st.builds("X: a{}b".format, st.sampled_from(["\r", "\n", "\x01", "\x7f", "é", "🙂", "\udcff", "\x1b"])),
)
bad_endpoint = st.one_of(
    st.sampled_from(
        ["GET", "GET items", "/items", "1 /x", "G3T /x", "GÉT /x", "{", "{]", '{"method": "GET"}', "", "  "]
        + ['{"path": "/x", "weight": "a"}', '{"path": "/x", "weight": -1}', '{"path": 5}', '{"path": "x"}']
        + ['{"method": 5, "path": "/x"}', '{"path": "/x", "headers": "ab"}', '{"path": "/x", "headers": [1]}']
        + ['{"path": "/x", "weight": 1e400}', '{"path": "/x", "weight": NaN}', '{"path": "/x", "method": ""}']
        + ["GET /a\nb", "GET /\x7f", "GET /\udcff", "GET\t/x", '{"path": null}', '{"path": "/x", "json": }']
        + ['{"path": "/x", "headers": {"a b": "c"}}', '{"path": "/x", "method": "GÉT"}']
    ),
    st.builds("{} {}".format, st.sampled_from(["GET", "POST"]), st.text(string.ascii_letters + ".:", min_size=1)),
    st.builds("{} /x".format, st.text(string.digits + "-_.", min_size=1, max_size=5)),
)
bad_sweep = st.one_of(
    st.sampled_from(["nan", "inf", "-1", "x", ",", "1e309", "-5ms", "0,nan", "100,-1", "1e309ms", " , ,"]),
    st.lists(st.integers(0, 1000).map(str), max_size=3).map(lambda xs: ",".join([*xs, "soon"])),
)
bad_database_env = st.sampled_from(["A=B", "=", "DATABASE URL", "1URL", "URL\n", "é", "A-B", "\udcff", " "])
bad_request_path = st.one_of(
    st.sampled_from(["health", "http://h/health", " x", "x/y", "/a\tb", "/\n", "/\x7f", "/é\udcff", "  "]),
    st.text(string.ascii_letters, min_size=1, max_size=8),
)
bad_run_id = st.sampled_from(["a/b", "/abs", "..", ".", "../up", "x/../..", "/", "a\nb", "a/", "\udcff/x"])
bad_serve = st.sampled_from(["'unbalanced {port}", 'say "hi {port}', "\\", "  ", "'"])

BAD_OPTION: dict[str, st.SearchStrategy[str]] = {
    **{option: bad_duration for option in DURATION_OPTIONS if option != "--interval"},
    "--interval": bad_interval,
    **{option: st.one_of(not_whole, values.map(str)) for option, values in BAD_WHOLE.items()},
    **{option: st.one_of(not_a_number, values) for option, values in BAD_REAL.items()},
    "--prod-disconnect": bad_share,
    "--prod-timeout": bad_share,
    "--prod-error": bad_share,
    "--dsn": bad_dsn,
    "--pgbouncer": bad_dsn,
    "--target-url": bad_url,
    "--fault": bad_fault,
    "--mix": bad_mix,
    "-H": bad_header,
    "--header": bad_header,
    "-e": bad_endpoint,
    "--endpoint": bad_endpoint,
    "--sweep-disconnect": bad_sweep,
    "--variant": argv_text.filter(lambda v: v not in ("leaky", "fixed")),
    "--database-env": bad_database_env,
    "--probe-path": bad_request_path,
    "--pool-view": bad_request_path,
    "--run-id": bad_run_id,
    "--serve": bad_serve,
}
# Options whose value is a path: which of prepare()'s paths is bad for each.
BAD_PATH = {
    "--locustfile": ["file", "folder", "missing", "under-file", "no-user", "/dev/null", "/proc/nope.py"],
    "-f": ["folder", "no-user"],
    "--config": ["folder", "missing", "under-file", "binary", "broken", "/proc/nope.toml", "/sys"],
    "-c": ["binary", "broken"],
    "--out": ["file", "under-file", "/proc/forbidden", "/sys/x", "/dev/null", "/dev/null/x", "/proc/self/status"],
    "-o": ["file", "/sys/kernel/nope"],
}


def _run_params() -> list[click.Parameter]:
    from drainwatch.cli.run_options import run

    return run.params


RUN_OPTIONS = sorted(opt for p in _run_params() for opt in p.opts)
DEST = {opt: p.name for p in _run_params() for opt in p.opts}  # -u and --users are one option
MULTIPLE = {p.name for p in _run_params() if getattr(p, "multiple", False)}


def base_args(work: Path) -> list[str]:
    """What every run case starts from: an output folder that is inside the case's own folder."""
    return ["--out", str(work / "out")]


@st.composite
def one_bad_option(draw: st.DrawFn, paths: dict[str, str]) -> list[str]:
    """One option with a value that can never be valid, whatever comes with it."""
    option = draw(st.sampled_from(sorted(BAD_OPTION) + sorted(BAD_PATH)))
    if option in BAD_PATH:
        which = draw(st.sampled_from(BAD_PATH[option]))
        return [option, paths.get(which, which)]
    return [option, draw(BAD_OPTION[option])]


@st.composite
def some_option(draw: st.DrawFn) -> list[str]:
    """Any option of `drainwatch run` with any value (or none): valid or not, nobody can say in general."""
    option = draw(st.sampled_from(RUN_OPTIONS))
    if draw(st.integers(0, 9)) == 0:
        return [option]  # a flag, or an option whose value is missing (or is the next option)
    return [option, draw(st.one_of(argv_text, BAD_OPTION.get(option, argv_text)))]


# ---------------------------------------------------------------------------------------------
# run and check: every option


@fuzz(150)
@given(data=st.data(), command=st.sampled_from(["run", "check"]))
def test_a_bad_option_is_one_line(base: Path, data: st.DataObject, command: str) -> None:
    with workdir(base) as work:
        paths = prepare(work)
        bad = data.draw(one_bad_option(paths), label="bad")
        # Not the same option again: its last value would win. A repeatable one adds to it.
        same = {DEST["--out"]} | ({DEST[bad[0]]} - MULTIPLE)
        others = data.draw(st.lists(some_option().filter(lambda o: DEST[o[0]] not in same), max_size=2))
        before = tree(work)
        others.insert(data.draw(st.integers(0, len(others))), bad)
        ended = invoke(command, *base_args(work), *[a for o in others for a in o], cwd=work)
        assert_one_line(ended)
        assert tree(work) == before


@fuzz(60)
@given(data=st.data())
def test_a_bad_value_from_the_environment_is_one_line(base: Path, data: st.DataObject) -> None:
    """DRAINWATCH_<OPTION> takes the same path as the option itself."""
    names = sorted(option for option in BAD_OPTION if option.startswith("--") and option not in ("--header", "--fault"))
    names = [n for n in names if n not in ("--endpoint", "--checkpoint-every")]
    option = data.draw(st.sampled_from(names))
    value = data.draw(BAD_OPTION[option].filter(lambda v: v != ""))  # an empty variable is an unset one
    with workdir(base) as work:
        before = tree(work)
        variable = "DRAINWATCH_" + option.removeprefix("--").replace("-", "_").upper()
        ended = invoke("check", *base_args(work), cwd=work, env={variable: value})
        assert_one_line(ended)
        assert tree(work) == before


@fuzz(120)
@given(data=st.data(), command=st.sampled_from(["run", "check"]))
def test_any_options_are_a_plan_or_one_line(base: Path, data: st.DataObject, command: str) -> None:
    """Any mix of options and values: either a plan that would start, or one line and exit 2."""
    with workdir(base) as work:
        options = data.draw(st.lists(some_option(), min_size=1, max_size=4))
        before = tree(work)
        args = [command, *base_args(work), *[a for o in options for a in o]]
        ended = invoke(*args, cwd=work)
        assert_accepted_or_one_line(ended)
        assert tree(work) == before


@fuzz(80)
@given(options=st.lists(some_option(), min_size=1, max_size=4))
def test_the_plan_is_built_or_refused_with_a_usage_error(base: Path, options: list[list[str]]) -> None:
    """The path `drainwatch run` takes, called directly: plan_from, then validate."""
    from drainwatch.cli.run_options import plan_from, run
    from drainwatch.plan import RunConfig, validate

    with workdir(base) as work, contextlib.chdir(work), mock.patch.dict(os.environ, {}, clear=False):
        for name in [n for n in os.environ if n.startswith("DRAINWATCH_")]:
            del os.environ[name]
        args = [*base_args(work), *[a for o in options for a in o]]
        try:
            ctx = run.make_context("run", args)
            cfg = validate(plan_from(ctx, ctx.params.pop("config_path"), dict(ctx.params)))
        # A newline the user typed into a value stays in the message here; the command group
        # escapes it on the way out (test_any_options_are_a_plan_or_one_line sees that).
        except UsageError as exc:
            assert "\n" not in one_line(str(exc)) and str(exc).strip(), repr(exc)
            assert exc.hint.strip() and "\n" not in exc.hint, repr(exc)
        except click.UsageError as exc:  # BadParameter is one: Click's own parsing and conversion
            assert exc.format_message().strip(), repr(exc)
        else:
            assert isinstance(cfg, RunConfig)
        assert not (work / "out").exists()


@fuzz(40)
@given(args=st.lists(st.one_of(argv_text, st.builds("--{}".format, argv_text)), min_size=1, max_size=3))
def test_unknown_commands_and_options_are_one_line(base: Path, args: list[str]) -> None:
    known = {"run", "check", "collect", "report", "compare", "forecast", "init", "worker", "demo-service"}
    known |= {"-h", "--help", "--version", "-v", "--verbose"}
    args = ["x" + arg if arg in known else arg for arg in args]  # none of the real ones
    with workdir(base) as work:
        before = tree(work)
        assert_one_line(invoke(*args, cwd=work))
        assert tree(work) == before


# ---------------------------------------------------------------------------------------------
# drainwatch.toml


def toml_string(text: str) -> str:
    """A TOML basic string: every character TOML does not take raw is a \\u escape."""
    return '"' + "".join(c if c >= " " and c not in '"\\\x7f' else f"\\u{ord(c):04x}" for c in text) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in data.items())


def nested(key: str, value: Any) -> dict[str, Any]:
    """``a.b.c`` = value as nested tables."""
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


toml_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)
toml_scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, -(2**63), 2**63 - 1, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True),
    toml_text,
    st.sampled_from(["", " ", "\x00", "a\x00b", "1e309s", "nan", "-1s", "🙂", "\u202e", "Ω"]),
    st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
    st.dates(),
    st.times(),
)
toml_any = st.recursive(
    toml_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(toml_text, inner, max_size=3),
    max_leaves=5,
)
not_scalar = st.one_of(
    st.lists(toml_scalar, max_size=3),
    st.dates(),
    st.times(),
    st.datetimes(),
    st.sampled_from(["\x00", "a\x00b"]),
)
INT_KEYS = ["target.pool_limit", "database.embedded_max_connections", "load.users", "load.workers"]
INT_KEYS += ["verdict.tolerance"]
DURATION_KEYS = ["load.warmup", "load.baseline", "load.duration", "load.settle", "load.interval", "probe.timeout"]
TABLE_KEYS = ["target.env", "target.headers", "probe.headers"]


def option_keys() -> list[str]:
    from drainwatch.configfile import OPTION_KEYS

    return sorted(OPTION_KEYS)


@st.composite
def bad_config(draw: st.DrawFn) -> dict[str, Any]:
    """A config with one entry that can never be valid."""
    from drainwatch.configfile import _valid_keys

    valid = set(_valid_keys())
    kind = draw(
        st.sampled_from(
            ["unknown", "not_scalar", "int", "duration", "spawn_rate", "table", "endpoints", "chaos", "strings"]
        )
    )
    if kind == "unknown":
        parts = draw(st.lists(toml_text.filter(lambda k: "." not in k), min_size=1, max_size=3))
        key = ".".join(parts)
        if key in valid or any(v.startswith(key + ".") for v in valid) or key.startswith("chaos."):
            key = "x-" + key
        return nested(key, draw(toml_scalar)) if len(parts) > 1 else {key: draw(toml_scalar)}
    if kind == "not_scalar":
        key = draw(st.sampled_from([k for k in option_keys() if k not in TABLE_KEYS and k != "load.mix"]))
        return nested(key, draw(not_scalar))
    if kind == "int":
        value = draw(st.one_of(st.floats(allow_nan=True).filter(lambda f: not f.is_integer()), not_scalar))
        value = draw(st.sampled_from([value, float("inf"), float("nan"), "abc", "", {"a": 1}]))
        return nested(draw(st.sampled_from(INT_KEYS)), value)
    if kind == "duration":
        value = draw(st.one_of(st.sampled_from([0, -1, -0.5, float("inf"), float("nan"), -(2**63)]), bad_duration))
        return nested(draw(st.sampled_from(DURATION_KEYS)), value)
    if kind == "spawn_rate":
        return nested("load.spawn_rate", draw(st.sampled_from([0, -1, float("inf"), float("nan"), "x", [1]])))
    if kind == "table":
        value = draw(
            st.one_of(
                toml_scalar,
                st.lists(toml_scalar, max_size=2),
            )
        )
        key = draw(st.sampled_from(TABLE_KEYS))
        if draw(st.booleans()):  # a table, with a name or a value that cannot be one
            names = ["", "\x00", "A=B"] if key == "target.env" else ["", "a b", "é", "\x00", "a:b", "x\ny", "🙂"]
            values = ["\x00", "a\x00"] if key == "target.env" else ["\x00", "a\nb", "é", "\r", "\x1b"]
            value = draw(
                st.builds(lambda k: {k: "v"}, st.sampled_from(names))
                | st.builds(lambda v: {"X": v}, st.sampled_from(values))
            )
        return nested(key, value)
    if kind == "endpoints":
        entry = draw(
            st.sampled_from(
                [
                    {"method": "GET"},
                    {"path": "/x", "weight": "a"},
                    {"path": "/x", "weight": -1},
                    {"path": "/x", "weight": float("inf")},
                    {"path": "/x", "weight": float("nan")},
                    {"path": "/x", "json": datetime.date(2000, 1, 1)},
                    {"path": datetime.date(2000, 1, 1)},
                    {"path": "/x", "headers": "h"},
                    {"path": "/x", "headers": {"a b": "c"}},
                    {"path": "/x", "bogus": 1},
                    {"path": "items"},
                    {"path": 5},
                    {"path": "/x", "method": "G3T"},
                    {"path": "/x", "method": ""},
                ]
            )
        )
        return {"endpoints": draw(st.sampled_from([[entry], 5, "x", [1], True, [entry, {"path": "/ok"}]]))}
    if kind == "chaos":
        section = draw(
            st.sampled_from(
                [
                    {"disconnect": {"after_ms": "x"}},
                    {"disconnect": {"after_ms": -1}},
                    {"disconnect": {"after_ms": float("nan")}},
                    {"disconnect": {"after_chunks": 1.5}},
                    {"disconnect": {"after_chunks": "many"}},
                    {"disconnect": {"after_chunks": -2}},
                    {"timeout": {"client_timeout_ms": 0}},
                    {"timeout": {"client_timeout_ms": "soon"}},
                    {"timeout": {"client_timeout_ms": float("inf")}},
                    {"timeout": {"expect": 504}},
                    {"timeout": {"expect": ["x"]}},
                    {"error": {"expect": [99]}},
                    {"error": {"expect": [1000]}},
                    {"error": {"expect": "500"}},
                    {"error": {"expect": [{"a": 1}]}},
                    {"error": {"request": ""}},
                    {"error": {"request": 5}},
                    {"error": {"request": "POST orders"}},
                    {"error": {"request": ["POST /x"]}},
                    {"error": {"json": datetime.time(1, 2)}},
                    {"error": {"request": "POST /x", "headers": "h"}},
                    {"client_timeout": "abc"},
                    {"client_timeout": 0},
                    {"client_timeout": -5},
                    {"client_timeout": float("nan")},
                    {"client_timeout": [1]},
                    {"nope": {"request": "GET /"}},
                    {"disconnect": 5},
                    {"disconnect": {"nope": 1}},
                ]
            )
        )
        return {"chaos": section}
    # strings: a NUL or a wrong value where text belongs
    key = draw(
        st.sampled_from(["target.url", "database.dsn", "target.command", "probe.path", "target.pool_view", "load.mix"])
    )
    bad = {
        "target.url": bad_url,
        "database.dsn": bad_dsn,
        "target.command": bad_serve,
        "probe.path": bad_request_path,
        "target.pool_view": bad_request_path,
        "load.mix": bad_mix,
    }[key]
    value = draw(st.one_of(bad, st.just("a\x00b")).filter(lambda v: not any(0xD800 <= ord(c) <= 0xDFFF for c in v)))
    return nested(key, value)


@fuzz(150)
@given(data=st.data(), as_pyproject=st.booleans())
def test_a_bad_config_file_is_one_line(base: Path, data: st.DataObject, as_pyproject: bool) -> None:
    config = data.draw(bad_config(), label="config")
    extra = data.draw(st.dictionaries(st.sampled_from(["load", "probe"]), st.just({}), max_size=1))
    with workdir(base) as work:
        body = merge(extra, config)
        if as_pyproject:
            path = work / "pyproject.toml"
            path.write_text(toml_document({"tool": {"drainwatch": body}}))
        else:
            path = work / "drainwatch.toml"
            path.write_text(toml_document(body))
        before = tree(work)
        given_path = data.draw(st.booleans())
        args = ["check", *(["--config", str(path)] if given_path else []), *base_args(work)]
        if "target" in body and "url" in body["target"]:
            args += ["--dsn", "postgresql://u@127.0.0.1:5432/db"]
        ended = invoke(*args, cwd=work)
        assert_one_line(ended)
        assert tree(work) == before


@fuzz(100)
@given(config=st.dictionaries(st.sampled_from(option_keys() + ["endpoints", "chaos"]), toml_any, max_size=3))
def test_any_config_file_is_a_plan_or_one_line(base: Path, config: dict[str, Any]) -> None:
    with workdir(base) as work:
        body: dict[str, Any] = {}
        for key, value in config.items():
            body = merge(body, nested(key, value))
        path = work / "drainwatch.toml"
        path.write_text(toml_document(body))
        before = tree(work)
        ended = invoke("run", *base_args(work), cwd=work)
        assert_accepted_or_one_line(ended)
        assert tree(work) == before


@fuzz(30)
@given(
    content=st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"tool = 5\n", b"[tool]\ndrainwatch = 5\n", b"tool = [1]\n", b"[tool]\ndrainwatch = []\n"]),
        st.sampled_from(
            [b"\xff\xfe[tool.drainwatch]\n", b"[tool.drainwatch]\nload = 5\n", b"[tool.drainwatch.load]\n"]
        ),
    )
)
def test_a_pyproject_that_is_not_ours_or_not_toml(base: Path, content: bytes) -> None:
    """A pyproject.toml found in the current folder, or given with --config: a plan or one line."""
    with workdir(base) as work:
        (work / "pyproject.toml").write_bytes(content)
        for args in (["run"], ["run", "--config", str(work / "pyproject.toml")]):
            before = tree(work)
            assert_accepted_or_one_line(invoke(*args, *base_args(work), cwd=work))
            assert tree(work) == before


# ---------------------------------------------------------------------------------------------
# collect and init

DSN = "postgresql://u@127.0.0.1:5432/db"


@fuzz(80)
@given(data=st.data())
def test_collect_refuses_bad_options_before_it_connects(base: Path, data: st.DataObject) -> None:
    with workdir(base) as work:
        paths = prepare(work)
        option = data.draw(
            st.sampled_from(["--interval", "--duration", "--out", "--dsn", "--metrics-port", "--metrics-host", "x"])
        )
        if option == "--out":  # a missing folder is made (the run's own collector writes into one)
            target = data.draw(st.sampled_from(["folder", "under-file", "/proc/x.csv", "/sys/x.csv", "/dev/null/x"]))
            args = ["--out", paths.get(target, target)]
        elif option == "--dsn":
            args = ["--dsn", data.draw(bad_dsn)]
        elif option == "--metrics-port":
            args = ["--metrics-port", data.draw(st.one_of(BAD_WHOLE["--metrics-port"].map(str), not_whole))]
        elif option == "--metrics-host":
            host = data.draw(st.sampled_from(["999.1.1.1", "not a host", "::99999", "\udcff", "http://h", "-"]))
            args = ["--metrics-port", "9187", "--metrics-host", host]
        elif option == "x":
            args = [data.draw(st.sampled_from(["--nope", "extra", "--interval"]))]
        else:
            args = [option, data.draw(bad_interval if option == "--interval" else bad_duration)]
        before = tree(work)
        ended = invoke("collect", "--dsn", DSN, "--out", str(work / "samples.csv"), *args, cwd=work)
        assert_one_line(ended)
        assert tree(work) == before


@fuzz(40)
@given(which=st.sampled_from(["file", "folder", "missing", "under-file", "/dev/null", "/proc/x", "/sys/x", "", "."]))
def test_init_refuses_a_path_it_cannot_write(base: Path, which: str) -> None:
    with workdir(base) as work:
        paths = prepare(work)
        before = tree(work)
        ended = invoke("init", paths.get(which, which), cwd=work)
        assert_one_line(ended)
        assert tree(work) == before


# ---------------------------------------------------------------------------------------------
# Corrupt run folders: report, compare, forecast

SHORT = 0.03  # hours: every phase, in 108 s of synthetic data
CSVS = ["samples.csv", "locust_stats.csv", "lingering.csv", "probe.csv", "locust_stats_history.csv"]
CSVS += ["locust_failures.csv", "locust_exceptions.csv"]
JSONS = ["run.json", "summary.json"]
READ_BY_THE_REPORT = {*CSVS, *JSONS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid run folders to corrupt copies of: a leak and a pass."""
    folder = tmp_path_factory.mktemp("runs")
    return {v: make_rundir(folder / v.lower(), SHORT, 1, v) for v in ("LEAK", "PASS")}


def json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from json_paths(value, (*prefix, i))


def replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
# Keys the report reads that a completed run without --isolate, --sweep-disconnect or --fault lacks.
EXTRA_KEYS = {
    "run.json": ["isolation", "sweep", "faults", "current_phase", "error", "status", "config", "target", "versions"],
    "summary.json": ["forecast", "diagnosis", "attribution", "zombie", "pool_view", "oldest_held_s", "checks"],
}
SHAPED = {  # near-valid shapes, with one part wrong: what a hand edit or another version leaves
    "isolation": [
        {"disconnect": {"verdict": "LEAK"}},
        {"error": 5},
        {"error": {"verdict": 1, "leaked": "x"}},
        {"error": {"verdict": "LEAK", "leaked": 1, "requests": 2, "per_1000": None, "endpoints": None}},
        {"error": {"verdict": "LEAK", "leaked": 1, "requests": 2, "per_1000": "x", "endpoints": {"GET /": 1}}},
    ],
    "sweep": [[{"after_ms": "x", "verdict": "PASS", "leaked": 0, "requests": 1}], [5], [{}]],
    "faults": [[{"start": "x"}], [{"fault": "pg-restart@1s", "start": "soon"}], ["pg-restart"]],
    "forecast": [{"rates": {"error": {}}}, {"sentence": 5, "rates": 5}, {"sentence": "s", "assumptions": [1]}],
    "diagnosis": [[{"pattern": "p"}], [5], [{"fix": 1, "pattern": None}]],
    "attribution": [{"likely": {"a": 1}}, {"likely": 5}, {"statements": {"q": "x"}, "likely": {}, "of": 1}],
    "zombie": [{"peak_active": 3}, {"peak_active": 2, "lasted_s": "x"}],
    "pool_view": [{"checked_out": "x"}, [1]],
    "oldest_held_s": ["x", [1], -1e308],
    "checks": [[5], [{"passed": True}], "x"],
    "phases": [{"load": ["x", None]}, {"load": [1, "x"]}, {"load": 5}, [1], {"load": [None]}, {"load": [1e308, 1e309]}],
}


KEY_COLUMNS = {  # the columns the report, compare and forecast compute with
    "samples.csv": ["t", "total", "active", "idle", "idle_in_transaction", "oldest_iit_s", "gap"],
    "locust_stats_history.csv": ["Timestamp", "Name", "Requests/s", "Failures/s", "50%", "95%"],
    "locust_stats.csv": ["Name", "Request Count", "Failure Count", "Requests/s", "95%"],
    "probe.csv": ["t", "ok", "elapsed_ms", "status"],
    "lingering.csv": ["kind", "state_age_s", "xact_age_s", "backend_age_s", "query", "pid"],
    "locust_failures.csv": ["Occurrences", "Name"],
}
ODD_CELLS = ["x", "", "nan", "inf", "-inf", "-1", "1e309", "1e300", "-1e300", "N/A", "🙂", "Aggregated", "0"]


@st.composite
def corruption(draw: st.DrawFn, run_dir: Path) -> list[str]:
    """Corrupt ``run_dir`` in one to three ways; returns what was done, for the failure message."""
    done = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(CSVS + JSONS + ["report.html", "compare.html"]))
        path = run_dir / name
        ops = ["delete", "truncate", "garbage", "folder", "empty"]
        if name in JSONS:
            ops += ["value", "node", "node", "key", "key"]
        elif name in CSVS:
            ops += ["drop column", "reorder", "rename header", "cell", "junk line", "only header", "swap header"]
        else:
            ops = ["folder"]
        op = draw(st.sampled_from(ops))
        done.append(f"{name}: {op}")
        if path.is_dir():
            continue
        exists = path.is_file()
        if op == "delete":
            path.unlink(missing_ok=True)
        elif op == "folder":
            path.unlink(missing_ok=True)
            path.mkdir()
            (path / "inside").write_text("x")
        elif op == "empty":
            path.write_bytes(b"")
        elif op == "garbage":
            path.write_bytes(
                draw(st.binary(max_size=64) | st.sampled_from([b"\xff\xfe\x00\x01", b"a,b\n\x80\x81,\x00\n"]))
            )
        elif not exists:
            continue
        elif op == "truncate":
            raw = path.read_bytes()
            path.write_bytes(raw[: draw(st.integers(0, max(0, len(raw) - 1)))])
        elif op in ("value", "node", "key"):
            try:
                doc = json.loads(path.read_text())
            except ValueError:
                continue
            if op == "value":
                doc = draw(json_value)
            elif op == "node":
                where = draw(st.sampled_from(list(json_paths(doc))[1:] or [()]))
                done[-1] += f" {list(where)}"
                doc = replaced(doc, where, draw(json_value | st.sampled_from(["x", -1, 1e308, [], {}, None])))
            elif isinstance(doc, dict):
                key = draw(st.sampled_from(EXTRA_KEYS[name] + ["phases"]))
                doc = {**doc, key: draw(st.sampled_from(SHAPED.get(key, ["x"])) | json_value)}
                done[-1] += f" {key}={doc[key]!r}"
            path.write_text(json.dumps(doc))
        else:
            text = path.read_text(errors="replace")
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                continue
            width = len(rows[0])
            if op == "drop column" and width:
                j = draw(st.integers(0, width - 1))
                rows = [r[:j] + r[j + 1 :] for r in rows]
            elif op == "reorder" and width:
                order = draw(st.permutations(range(width)))
                rows = [[r[i] for i in order if i < len(r)] for r in rows]
            elif op == "rename header" and width:
                rows[0][draw(st.integers(0, width - 1))] = draw(st.text(max_size=6))
            elif op == "swap header" and width > 1:
                rows[0] = rows[0][1:] + rows[0][:1]
            elif op == "cell" and len(rows) > 1:
                key = [rows[0].index(c) for c in KEY_COLUMNS.get(name, []) if c in rows[0]]
                j = draw(st.sampled_from(key) if key and draw(st.booleans()) else st.integers(0, width - 1))
                for i in draw(st.lists(st.integers(1, len(rows) - 1), min_size=1, max_size=3)):
                    if j < len(rows[i]):
                        rows[i][j] = draw(st.sampled_from(ODD_CELLS))
            elif op == "junk line":
                rows.insert(draw(st.integers(1, len(rows))), [draw(st.text(max_size=10))] * draw(st.integers(1, 40)))
            elif op == "only header":
                rows = rows[:1]
            out = io.StringIO()
            csv.writer(out).writerows(rows)
            path.write_text(out.getvalue())
    return done


def copy_run(source: Path, work: Path, name: str) -> Path:
    return Path(shutil.copytree(source, work / name))


@fuzz(30)
@given(data=st.data(), verdict=st.sampled_from(["LEAK", "PASS"]))
def test_report_of_a_corrupt_run_folder_names_what_is_missing(
    base: Path, runs: dict[str, Path], data: st.DataObject, verdict: str
) -> None:
    with workdir(base) as work:
        run_dir = copy_run(runs[verdict], work, "run")
        done = data.draw(corruption(run_dir), label="corrupted")
        ended = invoke("report", str(run_dir), cwd=work)
        if ended.code == 0:
            page = (run_dir / "report.html").read_text()
            assert ended.out.startswith("report: "), str(ended)
            assert "Traceback" not in ended.err, str(ended)
            notes = page.split('<div class="notes">', 1)[1].split("</div>", 1)[0] if 'class="notes"' in page else ""
            for name in READ_BY_THE_REPORT:
                if not (run_dir / name).is_file():
                    assert name in notes, f"{name} missing, but not named: {done}\n{notes}"
        else:
            assert_one_line(ended)


@fuzz(30)
@given(data=st.data(), which=st.sampled_from(["A", "B", "both"]))
def test_compare_of_a_corrupt_run_folder_is_a_comparison_or_one_line(
    base: Path, runs: dict[str, Path], data: st.DataObject, which: str
) -> None:
    with workdir(base) as work:
        a, b = copy_run(runs["PASS"], work, "a"), copy_run(runs["LEAK"], work, "b")
        done = [
            data.draw(corruption(d), label=f"corrupted {d.name}") for d in (a, b) if which in (d.name.upper(), "both")
        ]
        before = tree(work)
        ended = invoke("compare", str(a), str(b), cwd=work)
        if ended.code in (0, 1):
            assert "Traceback" not in ended.err + ended.out and not ended.err.strip(), f"{done}\n{ended}"
            assert (b / "compare.html").is_file() or (b / "compare.html" / "compare.html").is_file(), str(ended)
        else:
            assert_one_line(ended)
            assert tree(work) == before, f"{done}\n{ended}"


@fuzz(80)
@given(data=st.data(), verdict=st.sampled_from(["LEAK", "PASS"]))
def test_forecast_of_a_corrupt_run_folder_is_a_forecast_or_one_line(
    base: Path, runs: dict[str, Path], data: st.DataObject, verdict: str
) -> None:
    with workdir(base) as work:
        run_dir = copy_run(runs[verdict], work, "run")
        done = data.draw(corruption(run_dir), label="corrupted")
        before = tree(work)
        pool = data.draw(st.sampled_from([[], ["--prod-pool", "30"]]))
        ended = invoke("forecast", str(run_dir), "--prod-rps", "40", "--prod-disconnect", "0.5%", *pool, cwd=work)
        if ended.code == 0:
            assert "Traceback" not in ended.err + ended.out and not ended.err.strip(), f"{done}\n{ended}"
        else:
            assert_one_line(ended)
        assert tree(work) == before, f"{done}\n{ended}"


@fuzz(60)
@given(data=st.data(), command=st.sampled_from(["report", "compare", "forecast"]))
def test_a_bad_run_folder_argument_is_one_line(
    base: Path, runs: dict[str, Path], data: st.DataObject, command: str
) -> None:
    """Paths that are no run folder, and bad options beside a good one."""
    with workdir(base) as work:
        paths = prepare(work)
        good = str(copy_run(runs["LEAK"], work, "good"))
        which = data.draw(st.sampled_from(["file", "folder", "missing", "under-file", "/dev/null", "/proc", "", "/"]))
        bad = paths.get(which, which)
        if command == "report":
            args = ["report", bad]
        elif command == "compare":
            args = data.draw(
                st.sampled_from(
                    [
                        ["compare", bad, good],
                        ["compare", good, bad],
                        ["compare", good, good, "-o", paths["under-file"]],
                        ["compare", good, good, "-o", paths["missing"]],
                        ["compare", good, good, "-o", "/proc/x.html"],
                        ["compare", good, good, "-o", "/sys/x.html"],
                        ["compare", good],
                    ]
                )
            )
        else:
            prod = {
                "--prod-rps": st.sampled_from(["0", "-1", "nan", "inf", "-inf", "abc", ""]),
                "--prod-pool": st.sampled_from(["-1", "-30", "abc", "1.5"]),
                "--prod-disconnect": bad_share,
                "--prod-timeout": bad_share,
                "--prod-error": bad_share,
            }
            option = data.draw(st.sampled_from([*prod, "folder"]))
            args = ["forecast", good, "--prod-rps", "40", "--prod-pool", "30"]
            args = (
                ["forecast", bad, "--prod-rps", "40"]
                if option == "folder"
                else [*args, option, data.draw(prod[option])]
            )
        before = tree(work)
        ended = invoke(*args, cwd=work)
        assert_one_line(ended)
        assert tree(work) == before


# ---------------------------------------------------------------------------------------------
# At the real boundary: a process, its stderr and its exit code


# Should a case ever be accepted, it would start nothing: its database and service are on port 9.
NOWHERE = {
    "DRAINWATCH_DSN": "postgresql://drainwatch@127.0.0.1:9/none",
    "DRAINWATCH_TARGET_URL": "http://127.0.0.1:9",
    "DRAINWATCH_STEADY": "GET /x",
}


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["check", "--duration", "1e309"], "--duration '1e309' is not a duration"),
        (["run", "--warmup", "nan"], "--warmup 'nan' is not a duration"),
        (["check", "--fault", "pg-restart@nan"], "--fault 'pg-restart@nan' time 'nan' is not a duration"),
        (["run", "-H", "X-Caf\u00e9: 1"], "--header: 'X-Café' is not a header name"),
        (["check", "--dsn", "postgresql://u@127.0.0.1:99999/db"], "port '99999' in --dsn is not a port number"),
        (["run", "--target-url", "http://[::1"], "--target-url 'http://[::1' is not an http(s) URL"),
        (["check", "-e", '{"path": "/x", "weight": 1e400}'], '--endpoint \'{"path": "/x", "weight": 1e400}\' is not a'),
        (["run", "--run-id", "a\nb"], "--run-id 'a\\nb' is not a folder name"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_refused_in_one_line_by_the_real_process(tmp_path: Path, args: list[str], cause: str) -> None:
    proc = drainwatch(*args, "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=60, env=NOWHERE)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cause}") and " — hint: " in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_a_bad_config_file_is_refused_in_one_line_by_the_real_process(tmp_path: Path) -> None:
    (tmp_path / "drainwatch.toml").write_text('[load]\nusers = [1, 2]\n[target]\nno_restart = "maybe"\n')
    proc = drainwatch("check", "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=60, env=NOWHERE)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: load.users in drainwatch.toml must be a single value, not a list — hint: ")


def test_compare_of_an_unreadable_run_is_one_line_in_the_real_process(tmp_path: Path) -> None:
    """No warning line besides the error: what cannot be read is in the error (and the page)."""
    a, b = make_rundir(tmp_path / "a", SHORT, 1, "PASS"), make_rundir(tmp_path / "b", SHORT, 1, "LEAK")
    (b / "locust_stats.csv").write_bytes(b"Name,Request Count\n\xff\xfe,\x00\x80\n" * 3)
    (b / "summary.json").unlink()
    proc = drainwatch("compare", str(a), str(b), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
