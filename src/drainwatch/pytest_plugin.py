"""drainwatch as a pytest plugin: a drain test is one test function.

Installed with drainwatch and on by default (``-p no:drainwatch`` turns it off)::

    def test_no_leak(drainwatch):
        drainwatch.run(serve="uvicorn app.main:app --port {port}", mix="error=1,disconnect=1")

    @pytest.mark.drainwatch(serve="uvicorn app.main:app --port {port}", expect="LEAK")
    def test_the_outage_reproduces(drainwatch):
        assert drainwatch.result.summary["leaked"] >= 1

``run`` takes the options of ``drainwatch run`` as keywords (``serve``, ``endpoints``,
``mix``, ``duration``, ``config``…), calls the library as the command does (one plan,
one call) and fails the test, with the console verdict and the run folder, unless the
verdict is ``expect`` (PASS by default; None accepts any). Every process it starts is
stopped when it returns, fails or is interrupted.

This module is imported by every pytest session in an environment that has drainwatch,
so it imports nothing heavy until a test asks for a run.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from drainwatch.judge.verdict import Verdict

MARKER = "drainwatch"


@dataclass(frozen=True)
class DrainResult:
    """What one run found: the verdict, its console text and where the run folder is."""

    verdict: Verdict | None
    run_dir: Path
    text: str

    @property
    def outcome(self) -> str:
        return self.verdict.outcome if self.verdict else "NO VERDICT"

    @property
    def passed(self) -> bool:
        return self.outcome == "PASS"

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json of the run, as the CLI wrote it."""
        found: dict[str, Any] = json.loads((self.run_dir / "summary.json").read_text())
        return found

    def __str__(self) -> str:
        return self.text


class DrainSession:
    """The ``drainwatch`` fixture: runs drainwatch for one test, into the test's own folder."""

    def __init__(self, folder: Path, name: str, defaults: Mapping[str, Any]) -> None:
        self._folder = folder
        self._name = name
        self._defaults = dict(defaults)
        self._runs = 0
        self.result: DrainResult | None = None

    def run(self, *, expect: str | None = "PASS", **options: Any) -> DrainResult:
        """Run drainwatch with ``options`` (those of ``drainwatch run``, as keywords, over the
        marker's); fail the test unless the verdict is ``expect``."""
        from rich.console import Console

        from drainwatch.cli.run_options import plan_from_options, run_plan
        from drainwatch.errors import DrainwatchError, Interrupted
        from drainwatch.run.live import print_verdict

        self._runs += 1
        given = {"out": self._folder, "run_id": f"{self._name}-{self._runs}", **self._defaults, **options}
        given.setdefault("quiet", True)
        screen = Console(file=io.StringIO(), width=100, record=True, highlight=False)
        try:
            cfg = plan_from_options(given)
            verdict = run_plan(cfg, screen)
        except DrainwatchError as exc:
            pytest.fail(f"drainwatch could not run: {exc}" + (f" — hint: {exc.hint}" if exc.hint else ""), False)
        except Interrupted as exc:  # the processes are stopped; pytest stops too
            raise KeyboardInterrupt from exc
        print_verdict(screen, verdict, cfg.run_dir)
        text = screen.export_text()
        self.result = DrainResult(verdict, cfg.run_dir, text)
        if expect is not None and self.result.outcome != expect.upper():
            pytest.fail(
                f"drainwatch: {self.result.outcome}, expected {expect.upper()}\n{text}\nrun folder: {cfg.run_dir}",
                pytrace=False,
            )
        return self.result


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): make the test a drain test: drainwatch runs with these options (those of "
        "`drainwatch run`, plus expect='PASS'|'LEAK'|'SATURATED'|'ERROR'|None) before its body, and the test fails "
        "unless the verdict is the one expected; the result is at drainwatch.result",
    )


@pytest.fixture
def drainwatch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DrainSession]:
    """Run drainwatch against your service from a test: ``drainwatch.run(serve=..., mix=...)``."""
    marker = request.node.get_closest_marker(MARKER)
    defaults = dict(marker.kwargs) if marker else {}
    defaults.pop("expect", None)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-") or "run"
    yield DrainSession(tmp_path / "drainwatch", name, defaults)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A marked test runs drainwatch before its body, with the marker's options."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keywords only (serve=..., mix=...), not {marker.args!r}")
    session = _session_of(item)
    session.run(expect=marker.kwargs.get("expect", "PASS"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A marked test gets the fixture even when its signature does not ask for it."""
    for item in items:
        if item.get_closest_marker(MARKER) and isinstance(item, pytest.Function):
            if MARKER not in item.fixturenames:
                item.fixturenames.append(MARKER)


def _session_of(item: pytest.Item) -> DrainSession:
    funcargs = getattr(item, "funcargs", {})
    session = funcargs.get(MARKER)
    if not isinstance(session, DrainSession):
        raise pytest.UsageError(f"{item.nodeid}: the {MARKER} fixture is not a drainwatch session here")
    return session
