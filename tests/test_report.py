"""The report, rendered from synthetic run directories (tests/rundirs.py)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from drainwatch.report import render_report
from drainwatch.report.rundata import connection_series, gap_spans, load_run, scenario_of, scenario_rates
from tests.rundirs import make_rundir

SHORT = 0.03  # hours: 108 s, enough for every phase


@pytest.fixture(scope="module")
def leak(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = make_rundir(tmp_path_factory.mktemp("leak") / "run-leak", SHORT, 4, "LEAK")
    return run_dir, render_report(run_dir).read_text()


def section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else None]


def png_of(page: str) -> bytes:
    found = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert found, "no embedded timeline"
    return base64.b64decode(found.group(1))


def test_report_is_written_into_the_run_directory(leak: tuple[Path, str]) -> None:
    run_dir, page = leak
    assert (run_dir / "report.html").read_text() == page
    assert not list(run_dir.glob(".report.html.*")), "temporary file left behind"
    assert page.startswith("<!DOCTYPE html>")


def test_verdict_panel_comes_first_and_says_what_leaked(leak: tuple[Path, str]) -> None:
    _, page = leak
    panel = page[page.index('<section class="verdict leak">') : page.index("</section>")]
    assert page.index('<section class="verdict') < page.index("<h2>Timeline</h2>")
    assert '<div class="word">LEAK</div>' in panel
    assert "<b>5</b><span>leaked connections (3 held, 2 in transaction)</span>" in panel
    assert "<b>never</b><span>back to baseline after the load</span>" in panel
    assert "<b>3/3 served</b><span>probe after settle</span>" in panel
    assert "<b>10 → 30 → 15</b>" in panel
    assert "Leaks by scenario: disconnect <b>2</b>, timeout <b>1</b>, error <b>2</b>" in panel
    checks = re.findall(r'<td><span class="(ok|fail) nw">.*?</span></td><td>(.*?)</td><td>(.*?)</td>', panel)
    assert [(result, title) for result, title, _ in checks] == [
        ("fail", "Connections drained"),  # 5 over baseline, none of them idle in the pool
        ("fail", "Nothing idle in a transaction"),
        ("fail", "No connection still held"),
        ("ok", "Connections reused, none left after one request"),
        ("ok", "Service still serves"),
    ]
    assert "<li>2 connection(s) idle in transaction after settle, oldest 35.2s</li>" in panel
    assert "This report is partial" not in page


def test_timeline_is_an_embedded_png(leak: tuple[Path, str]) -> None:
    _, page = leak
    assert png_of(page).startswith(b"\x89PNG\r\n\x1a\n")
    assert "Time zero is the load start." in section(page, "Timeline")


def test_lingering_table_lists_every_connection_leaks_first(leak: tuple[Path, str]) -> None:
    _, page = leak
    table = section(page, "Connections still open after settle")
    rows = re.findall(r'<tr class="(leak|)">', table)
    assert rows == ["leak"] * 5 + [""] * 10
    assert "15 connection(s) still open: 10 pooled, 3 held, 2 in transaction." in table
    for rid in ("r0000", "r0001", "r0002", "e0000", "e0001"):
        assert f'<td class="id">{rid}</td>' in table
    assert '<span class="kind in_transaction">in transaction</span>' in table
    assert "INSERT INTO orders (item, qty) VALUES ($1, $2)</span></td>" in table  # newlines folded


def test_traffic_tables_group_requests_by_scenario(leak: tuple[Path, str]) -> None:
    _, page = leak
    traffic = section(page, "Traffic")
    scenarios = re.findall(r'<tr class="(leak|total|)"><td>(\w+)</td>', traffic)
    assert scenarios == [
        ("leak", "disconnect"),
        ("leak", "error"),
        ("", "steady"),
        ("leak", "timeout"),
        ("total", "all"),
    ]
    assert "<td>timeout GET /report</td>" in traffic
    assert traffic.count('<span class="ok">yes</span>') == 3  # probe.csv's ok column is 1/0
    assert "CatchResponseError(&#x27;client hung up after 150 ms &lt;by design&gt;&#x27;)" in traffic
    assert "<by design>" not in page


def test_nothing_is_loaded_from_outside_the_file(leak: tuple[Path, str]) -> None:
    _, page = leak
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:|//|file:)""", page, re.IGNORECASE)
    assert not re.search(r"<(script|link|iframe|object|embed)\b|@import|url\(", page, re.IGNORECASE)


def test_pass_run(tmp_path: Path) -> None:
    page = render_report(make_rundir(tmp_path / "pass", SHORT, 4, "PASS")).read_text()
    assert '<div class="word">PASS</div>' in page
    assert "<b>0</b><span>leaked connections</span>" in page
    table = section(page, "Connections still open after settle")
    assert "10 connection(s) still open: 10 pooled." in table
    assert 'class="leak"' not in table


def test_error_run_says_the_target_is_down(tmp_path: Path) -> None:
    page = render_report(make_rundir(tmp_path / "error", SHORT, 4, "ERROR")).read_text()
    assert '<section class="verdict error">' in page
    assert "<li>the target is down: connection refused ([Errno 111] Connection refused)</li>" in page
    assert "<b>0/1 served, target down</b>" in page
    assert "No connection of the target was left open." in page
    probe = section(page, "Traffic")[section(page, "Traffic").index("<h3>Probe after settle</h3>") :]
    assert probe.count('<span class="fail">no</span>') == 1


def test_interrupted_run_is_a_partial_report(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "cut", SHORT, 4, status="interrupted")
    page = render_report(run_dir).read_text()
    banner = (
        '<div class="banner"><strong>This report is partial.</strong> The run was interrupted during the load '
        "phase. It shows what was collected until then.</div>"
    )
    assert banner in page
    assert '<div class="word">NO VERDICT</div>' in page
    assert "The run did not reach a verdict (interrupted)." in page
    for name in ("lingering.csv", "probe.csv"):
        assert f"{name} is missing" in page
    assert "summary.json is missing" not in page and "locust_stats.csv is missing" not in page
    assert "<td>load</td><td>" in page and "unfinished" in page

    # Killed before the verdict and before Locust wrote anything.
    (run_dir / "summary.json").unlink()
    for path in run_dir.glob("locust_*.csv"):
        path.unlink()
    page = render_report(run_dir).read_text()
    assert banner in page
    assert '<div class="word">NO VERDICT</div>' in page
    for name in ("summary.json", "locust_stats_history.csv", "locust_stats.csv", "locust_failures.csv"):
        assert f"{name} is missing" in page
    assert png_of(page)  # the samples alone still make a timeline


def test_a_nearly_empty_run_directory_still_gets_a_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    (run_dir / "samples.csv").write_text("")
    (run_dir / "lingering.csv").write_text("pid,application_name,state,kind\n")
    (run_dir / "summary.json").write_text("{not json")
    page = render_report(run_dir).read_text()
    assert "This report is partial" in page
    assert "run.json is missing; summary.json could not be read" in page
    assert "samples.csv is empty" in page
    assert "No time series was recorded" in page
    assert "No connection of the target was left open." in page
    with pytest.raises(FileNotFoundError):
        render_report(tmp_path / "nowhere")


def test_gap_rows_are_no_reading_not_zero_connections(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "gaps", SHORT, 4)
    samples = load_run(run_dir).samples
    assert samples is not None and samples["gap"].sum() == 32  # 8 s outage at 4 Hz
    assert samples.loc[samples["gap"], "total"].isna().all()
    series, width = connection_series(samples)
    assert width == 0.0 and series["total"].isna().sum() == 32
    [(start, end)] = gap_spans(samples)
    assert end - start == pytest.approx(8.0, abs=0.1)

    # The database gone for the whole run, and a line cut short by a killed collector.
    lines = (run_dir / "samples.csv").read_text().splitlines()
    gap_row = "{:.3f},0,0,0,0,0,0,0,0,0,0,0,1.0,1"
    (run_dir / "samples.csv").write_text(
        "\n".join(
            [lines[0], *(gap_row.format(1760000020 + i) for i in range(20)), "17600x0041.0,3,1", "1760000042.0,3"]
        )
        + "\n"
    )
    samples = load_run(run_dir).samples
    assert samples is not None and list(samples["total"].iloc[-1:]) == [3.0]  # the garbled line is dropped, not fatal
    page = render_report(run_dir).read_text()
    assert png_of(page)


def test_collector_silence_is_shown_as_a_gap(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "hole", SHORT, 4)
    lines = (run_dir / "samples.csv").read_text().splitlines()
    (run_dir / "samples.csv").write_text("\n".join(lines[:100] + lines[140:]) + "\n")  # 10 s without a row
    samples = load_run(run_dir).samples
    assert samples is not None
    assert any(end - start > 9 for start, end in gap_spans(samples))
    series, _ = connection_series(samples)
    assert series["total"].isna().sum() == 32 + 1  # the outage's rows, and one break for the silence


def test_history_without_per_name_rows_falls_back_to_all(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "agg", SHORT, 4)
    path = run_dir / "locust_stats_history.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *(line for line in lines[1:] if ",Aggregated," in line)]) + "\n")
    history = load_run(run_dir).history
    assert history is not None
    rps, fps = scenario_rates(history)
    assert list(rps.columns) == ["all"] and list(fps.columns) == ["all"]
    assert png_of(render_report(run_dir).read_text())


def test_scenario_is_the_first_word_of_the_request_name() -> None:
    assert scenario_of("disconnect POST /chat") == "disconnect"
    assert scenario_of("GET /items") == "unnamed"
    assert scenario_of("/items") == "unnamed"


def test_a_password_never_reaches_the_report(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "secret", SHORT, 4)
    run = json.loads((run_dir / "run.json").read_text())
    run["config"]["dsn"] = "postgresql://app:s3cret@db.internal:5432/app"
    run["database"]["dsn"] = "host=db password=s3cret dbname=app"
    (run_dir / "run.json").write_text(json.dumps(run))
    page = render_report(run_dir).read_text()
    assert "s3cret" not in page
    assert "postgresql://app:***@db.internal:5432/app" in page


def test_a_day_long_soak_is_downsampled(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "soak", 24, 1)
    data = load_run(run_dir)
    assert data.samples is not None and len(data.samples) > 86_000
    series, width = connection_series(data.samples)
    assert len(series) == 2000 and width == pytest.approx(43.2, abs=0.1)
    # A bin keeps its busiest reading: the downsampled peak is the true peak.
    assert np.nanmax(series["total"]) == data.samples["total"].max()
    page = render_report(run_dir).read_text()
    assert "each point is the busiest reading of its 43 s bin" in page
    assert png_of(page)


def test_unsure_connections_zombie_work_and_the_pools_own_view(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "view", SHORT, 4, "PASS")
    path = run_dir / "lingering.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(",idle,pooled,", ",idle,unsure,")
    path.write_text("\n".join(lines) + "\n")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["zombie"] = {"peak_active": 4, "lasted_s": 12.5}
    summary["pool_view"] = {"checked_out": 2, "idle": 8, "limit": 30}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = render_report(run_dir).read_text()
    assert "<b>4 active</b><span>after the load, for 12.5s</span>" in page
    assert '<div class="tile bad"><b>2 checked out</b><span>as the app&#x27;s own pools count them</span>' in page
    table = section(page, "Connections still open after settle")
    assert re.findall(r'<tr class="(maybe|leak|)">', table) == ["maybe"] + [""] * 9
    assert '<span class="kind unsure">unsure</span>' in table


def test_pgbouncer_counts_get_a_panel_of_their_own(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "pooled", SHORT, 4)
    assert "PgBouncer" not in section(render_report(run_dir).read_text(), "Timeline")  # no pooler: no panel, no note
    samples = load_run(run_dir).samples
    assert samples is not None
    rows = ["t,cl_active,cl_waiting,sv_active,sv_idle,sv_used,maxwait,gap"]
    for i, t in enumerate(samples["t"].to_numpy()[::4]):
        rows.append(f"{t:.3f},,,,,,,1" if i == 5 else f"{t:.3f},{6 + i % 3},{i % 2},6,{i % 4},0,{i % 2},0")
    (run_dir / "pgbouncer.csv").write_text("\n".join(rows) + "\n")
    data = load_run(run_dir)
    assert data.pooler is not None and data.pooler["cl_active"].isna().sum() == 1  # a gap row is no reading
    page = render_report(run_dir).read_text()
    assert "PgBouncer: cl_active, cl_waiting, sv_active and sv_idle from SHOW POOLS" in section(page, "Timeline")
    assert "pgbouncer.csv could not" not in page and "pgbouncer.csv is" not in page  # read without a note
    assert png_of(page)


def test_what_the_service_logged_is_drawn_when_it_happened(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "logged", SHORT, 4, "LEAK")
    assert "the service logged" not in section(render_report(run_dir).read_text(), "Timeline")
    samples = load_run(run_dir).samples
    assert samples is not None
    times = samples["t"].to_numpy()[10:40:10]
    lines = ["t,kind,line"] + [f"{t:.3f},gc_cleanup,The garbage collector is trying to clean up" for t in times]
    (run_dir / "service-warnings.csv").write_text("\n".join([*lines, "not-a-time,gc_cleanup,x"]) + "\n")
    page = render_report(run_dir).read_text()
    assert "ticks above the counts: lines the service logged, a row per kind" in section(page, "Timeline")
    assert png_of(page)
    assert "<h2>What the service logged</h2>" in page
