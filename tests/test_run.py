"""``drainwatch run`` end to end: embedded PostgreSQL, the demo under uvicorn, real Locust."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import FAST, drainwatch, leftovers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    out = tmp_path_factory.mktemp("runs")
    proc = drainwatch("run", "--variant", "leaky", "--out", str(out), "--run-id", "leaky", *FAST)
    return proc.returncode, proc.stdout + proc.stderr, out / "leaky"


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    out = tmp_path_factory.mktemp("runs")
    proc = drainwatch("run", "--variant", "fixed", "--out", str(out), "--run-id", "fixed", *FAST)
    return proc.returncode, proc.stdout + proc.stderr, out / "fixed"


def test_leaky_variant_is_a_leak(leaky_run: tuple[int, str, Path]) -> None:
    code, output, run_dir = leaky_run
    assert code == 1, output
    assert "LEAK" in output and "Traceback" not in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["schema"] == "drainwatch.summary/2"
    assert summary["verdict"] == "LEAK" and summary["status"] == "completed"
    assert summary["leaked"] > 0
    lingering = list(csv.DictReader((run_dir / "lingering.csv").open()))
    leaked = [row for row in lingering if row["kind"] in ("held", "in_transaction")]
    assert len(leaked) == summary["leaked"]
    # Each leak is attributed to the chaos kind that left it.
    assert {row["scenario"] for row in leaked} <= {"disconnect", "timeout", "error"}
    assert set(summary["scenarios"]) == {row["scenario"] for row in leaked}


def test_leaky_run_folder_is_complete(leaky_run: tuple[int, str, Path]) -> None:
    _, _, run_dir = leaky_run
    for name in (
        "run.json",
        "samples.csv",
        "lingering.csv",
        "locust_stats.csv",
        "locust_stats_history.csv",
        "probe.csv",
        "summary.json",
        "junit.xml",
        "report.html",
    ):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "run.json").read_text())
    assert list(record["phases"]) == ["provision", "warmup", "baseline", "load", "settle", "probe"]
    assert all(end >= start for start, end in record["phases"].values())
    assert record["versions"]["postgresql"].startswith("18")
    samples = list(csv.DictReader((run_dir / "samples.csv").open()))
    load_start, load_end = record["phases"]["load"]
    in_load = [s for s in samples if load_start <= float(s["t"]) <= load_end]
    assert len(in_load) >= 4 * 8  # 4 Hz through the load phase
    assert max(int(s["total"]) for s in in_load) > 0


def test_fixed_variant_passes(fixed_run: tuple[int, str, Path]) -> None:
    code, output, run_dir = fixed_run
    assert code == 0, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "PASS", summary["reasons"]
    assert summary["leaked"] == 0 and summary["probe"]["passed"]
    kinds = [row["kind"] for row in csv.DictReader((run_dir / "lingering.csv").open())]
    assert kinds and set(kinds) == {"pooled"}, kinds  # a warm pool stays open, and every connection in it is reset
    assert summary["idle_in_transaction"]["count"] == 0


def test_no_process_left_behind(leaky_run: tuple[int, str, Path], fixed_run: tuple[int, str, Path]) -> None:
    for _, _, run_dir in (leaky_run, fixed_run):
        started = json.loads((run_dir / "run.json").read_text())["processes"]
        assert set(started) == {"postgres", "target", "collector", "locust-warmup", "locust"}
        assert leftovers(run_dir) == {}


def test_pool_warmed_to_its_maximum_is_still_a_leak(leaky_run: tuple[int, str, Path]) -> None:
    """The warm-up fills the raw pool to its maximum, so counts never rise above baseline:
    the verdict rests on last-statement forensics, the pool view and the probe, and says so."""
    _, _, run_dir = leaky_run
    summary = json.loads((run_dir / "summary.json").read_text())
    baseline = list(csv.DictReader((run_dir / "baseline_connections.csv").open()))
    raw_at_baseline = [row for row in baseline if row["application_name"].endswith(":raw")]
    assert len(raw_at_baseline) == 10  # asyncpg's max_size: full before any chaos
    assert summary["peak"]["total"] <= summary["baseline"]["total"] + 1
    assert {"held_connections", "probe"} <= set(summary["evidence"])
    assert "drain" not in summary["evidence"]  # the counts alone would have passed it


def test_junit_xml_is_read_by_a_junit_library(
    leaky_run: tuple[int, str, Path], fixed_run: tuple[int, str, Path]
) -> None:
    from junitparser import Failure, JUnitXml

    leaky = {case.name: case for suite in JUnitXml.fromfile(str(leaky_run[2] / "junit.xml")) for case in suite}
    assert {"drain", "idle_in_transaction", "held_connections", "pool_view", "probe"} <= set(leaky)
    failed = {name for name, case in leaky.items() if any(isinstance(r, Failure) for r in case.result)}
    assert {"held_connections", "probe"} <= failed
    assert any(name.startswith("scenario:") for name in failed)  # per scenario that left connections open
    probe_failure = next(r for r in leaky["probe"].result if isinstance(r, Failure))
    assert "attempts=" in probe_failure.message and "ok=0" in probe_failure.message  # the numbers travel with it

    fixed = [case for suite in JUnitXml.fromfile(str(fixed_run[2] / "junit.xml")) for case in suite]
    assert fixed and all(case.is_passed for case in fixed)


def test_what_the_service_logged_is_read(leaky_run: tuple[int, str, Path], fixed_run: tuple[int, str, Path]) -> None:
    """The demo's log is tailed during the run: each kind drainwatch reads is counted, every line
    read is in the log itself, and the report has the section (empty for the fixed demo)."""
    from drainwatch.sample.service_log import KINDS, read_warnings

    for _, _, run_dir in (leaky_run, fixed_run):
        summary = json.loads((run_dir / "summary.json").read_text())
        rows = read_warnings(run_dir / "service-warnings.csv")
        counts = {kind: sum(row["kind"] == kind for row in rows) for kind in {row["kind"] for row in rows}}
        assert summary["service_warnings"] == counts and set(counts) <= set(KINDS)
        log = (run_dir / "logs" / "target.log").read_text()
        assert [row["line"] for row in rows if row["line"] not in log] == []
        assert "<h2>What the service logged</h2>" in (run_dir / "report.html").read_text()
    fixed = json.loads((fixed_run[2] / "summary.json").read_text())
    assert fixed["service_warnings"] == {}  # the fixed demo gives every connection back: nothing to warn of


def test_raw_pool_leaks_carry_the_line_that_acquired_them(leaky_run: tuple[int, str, Path]) -> None:
    """The demo's asyncpg pool is traced too: each of its held connections names the leaky route's acquire."""
    _, output, run_dir = leaky_run
    rows = list(csv.DictReader((run_dir / "lingering.csv").open()))
    raw_held = [row for row in rows if row["kind"] == "held" and row["application_name"].endswith(":raw")]
    assert raw_held, rows
    assert all("demo_service/leaky.py:" in row["taken_at"] for row in raw_held), raw_held
    # the leaky routes' own acquires (demo_service/leaky.py), never drainwatch's or asyncpg's frames
    assert {row["taken_at"].split(" in ")[-1] for row in raw_held} <= {"reply()", "build()", "refund()", "retry()"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert any("demo_service/leaky.py:" in site for site in summary["checkout_sites"]), summary["checkout_sites"]
    assert "checked out" in output and "never given back" in output


def test_the_hung_leaky_service_shows_its_handlers_queued_in_acquire(leaky_run: tuple[int, str, Path]) -> None:
    """After settle the dry raw pool still has requests queued for it: the pool view lists them where they wait."""
    _, output, run_dir = leaky_run
    summary = json.loads((run_dir / "summary.json").read_text())
    queued = [
        g
        for g in summary["waiting"]
        if g["what"] == "task"
        and "demo_service/leaky.py:" in g["at"]
        and g["waiting_in"].startswith("asyncpg/pool.py:")
    ]
    assert queued and sum(g["count"] for g in queued) >= 1, summary["waiting"]
    assert "still busy" in output  # the console panel wraps the rest of the line


def test_connections_left_to_the_garbage_collector_name_the_route_that_took_them(
    leaky_run: tuple[int, str, Path], fixed_run: tuple[int, str, Path]
) -> None:
    """SQLAlchemy's cleanup warning, linked to where the demo took the session it never closed."""
    leaky = json.loads((leaky_run[2] / "summary.json").read_text())
    collected = leaky["collected_sites"]
    assert all("demo_service/leaky.py:" in site for site in collected), collected
    # one warning line at least for each connection the collector took back while the view watched
    assert sum(collected.values()) <= leaky["service_warnings"].get("gc_cleanup", 0), leaky["service_warnings"]
    assert json.loads((fixed_run[2] / "summary.json").read_text())["collected_sites"] == {}
