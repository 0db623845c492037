"""`drainwatch compare A B`: two real runs (leaky and fixed) through the CLI, the rest on synthetic run folders."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from drainwatch.errors import UsageError
from drainwatch.report.compare import BETTER, SAME, WORSE, Comparison, compare_runs, load_pair, write_compare
from drainwatch.report.rundata import load_run
from tests.helpers import FAST, drainwatch
from tests.rundirs import make_rundir

SHORT = 0.03  # hours: 108 s, enough for every phase
HINT = "hint: pass two run folders written by `drainwatch run`, like reports/<run-id>"


# Real runs, one each for the module: about 35 s apiece.


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    for variant, code in (("leaky", 1), ("fixed", 0)):
        proc = drainwatch("run", "--variant", variant, "--out", str(out), "--run-id", variant, *FAST)
        assert proc.returncode == code, proc.stdout + proc.stderr
    return {"leaky": out / "leaky", "fixed": out / "fixed"}


def judgement(stdout: str, figure: str) -> str:
    """The B-vs-A word on the terminal table's row for ``figure``."""
    rows = [line.split() for line in stdout.splitlines() if line.strip().startswith(figure + " ")]
    assert len(rows) == 1, stdout
    return rows[0][-1]


def embedded_png(page: str) -> bytes:
    found = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert found, "no embedded figure"
    return base64.b64decode(found.group(1))


def assert_self_contained(page: str) -> None:
    assert embedded_png(page).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE), "a network reference"
    assert "<script" not in page and "<link" not in page


@pytest.mark.slow
def test_fixed_then_leaky_is_worse(real: dict[str, Path]) -> None:
    proc = drainwatch("compare", str(real["fixed"]), str(real["leaky"]), timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert judgement(proc.stdout, "leaked connections") == WORSE
    assert judgement(proc.stdout, "verdict") == WORSE
    assert judgement(proc.stdout, "probe") == WORSE  # the leaky demo's pool is exhausted
    assert "WORSE  B is worse than A on verdict, leaked connections" in " ".join(proc.stdout.split("\n"))
    page_path = real["leaky"] / "compare.html"  # into B's folder by default
    assert f"compare: {page_path}" in proc.stdout
    page = page_path.read_text()
    assert_self_contained(page)
    assert '<div class="word">WORSE</div>' in page
    assert "Each run&#x27;s time zero is the start of its load phase" in page


@pytest.mark.slow
def test_leaky_then_fixed_is_better(real: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "after.html"
    proc = drainwatch("compare", str(real["leaky"]), str(real["fixed"]), "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert judgement(proc.stdout, "leaked connections") == BETTER
    assert judgement(proc.stdout, "verdict") == BETTER
    assert_self_contained(out.read_text())
    assert not (real["fixed"] / "compare.html").exists()


# Bad input: one line, exit 2, nothing written.


def test_a_folder_that_is_not_a_run_folder(tmp_path: Path) -> None:
    run = make_rundir(tmp_path / "run", SHORT, 4, "PASS")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = drainwatch("compare", str(run), str(empty), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {empty} is not a drainwatch run folder (no run.json) — {HINT}"
    assert proc.stdout == ""
    assert not (empty / "compare.html").exists() and not (run / "compare.html").exists()


def test_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    run = make_rundir(tmp_path / "run", SHORT, 4, "PASS")
    proc = drainwatch("compare", str(tmp_path / "nope"), str(run), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope'} does not exist — {HINT}"


def test_a_missing_b_is_named_before_its_page(tmp_path: Path) -> None:
    run = make_rundir(tmp_path / "run", SHORT, 4, "PASS")
    with pytest.raises(UsageError, match=f"^{tmp_path / 'gone'} does not exist$"):
        write_compare(run, tmp_path / "gone")


def test_an_unfinished_run_has_nothing_to_compare(tmp_path: Path) -> None:
    run = make_rundir(tmp_path / "run", SHORT, 4, "PASS")
    cut = make_rundir(tmp_path / "cut", SHORT, 4, "LEAK", status="interrupted")
    with pytest.raises(UsageError) as caught:
        load_pair(run, cut)
    assert str(caught.value) == f"{cut} has no verdict to compare (the run did not finish: interrupted)"
    assert caught.value.hint == f"compare finished runs; `drainwatch report {cut}` shows what this one collected"


def test_out_in_a_missing_folder(tmp_path: Path) -> None:
    run = make_rundir(tmp_path / "run", SHORT, 4, "PASS")
    with pytest.raises(UsageError, match=r"^cannot write .*/missing/c\.html: .*/missing is not a writable folder$"):
        write_compare(run, run, tmp_path / "missing" / "c.html")


# The judgement, on synthetic runs (no database, a second each).


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return {verdict: make_rundir(root / verdict.lower(), SHORT, 4, verdict) for verdict in ("PASS", "LEAK", "ERROR")}


def rows(comparison: Comparison) -> dict[str, tuple[str, str, str, str]]:
    return {r.figure: (r.a, r.b, r.diff, r.judgement) for r in comparison.rows}


def test_leak_after_pass_is_worse_on_the_leak_figures(synthetic: dict[str, Path]) -> None:
    comparison = compare_runs(*load_pair(synthetic["PASS"], synthetic["LEAK"]))
    table = rows(comparison)
    assert table["verdict"] == ("PASS", "LEAK", "", WORSE)
    assert table["leaked connections"] == ("0", "5", "+5", WORSE)
    assert table["back to baseline"] == ("3.0 s", "never", "", WORSE)  # never is worse than any time
    assert table["idle in transaction"] == ("0", "2", "+2", WORSE)
    assert table["probe"] == ("3/3 served", "3/3 served", "", SAME)
    assert [r.figure for r in comparison.worse] == [
        "verdict",
        "leaked connections",
        "back to baseline",
        "idle in transaction",
        "oldest in transaction",
    ]
    assert comparison.exit_code == 1
    assert comparison.headline[0] == "WORSE"


def test_pass_after_leak_is_better(synthetic: dict[str, Path]) -> None:
    comparison = compare_runs(*load_pair(synthetic["LEAK"], synthetic["PASS"]))
    table = rows(comparison)
    assert table["leaked connections"] == ("5", "0", "−5", BETTER)
    assert table["back to baseline"] == ("never", "3.0 s", "", BETTER)
    assert comparison.exit_code == 0
    assert comparison.headline[0] == "BETTER"


def test_a_run_against_itself_is_the_same_everywhere(synthetic: dict[str, Path]) -> None:
    comparison = compare_runs(*load_pair(synthetic["PASS"], synthetic["PASS"]))
    assert {r.judgement for r in comparison.rows} == {SAME}
    assert comparison.exit_code == 0 and comparison.headline == ("SAME", "B leaks no more and no less than A")
    assert comparison.differences == []


def test_a_dead_target_is_worse_on_the_probe(synthetic: dict[str, Path]) -> None:
    comparison = compare_runs(*load_pair(synthetic["LEAK"], synthetic["ERROR"]))
    assert rows(comparison)["probe"] == ("3/3 served", "0/1 served, target down", "", WORSE)
    assert rows(comparison)["verdict"][3] == WORSE
    assert comparison.exit_code == 1


def test_noise_is_the_same_and_leak_counts_are_exact(synthetic: dict[str, Path]) -> None:
    a, b = load_run(synthetic["PASS"]), load_run(synthetic["PASS"])
    b.summary = dict(b.summary or {}, recovery_s=(a.summary or {})["recovery_s"] + 0.9)  # within 1 s
    aggregated = b.stats["Name"] == "Aggregated"  # type: ignore[index]
    b.stats.loc[aggregated, "50%"] *= 1.04  # type: ignore[union-attr]  # within 5 %
    b.stats.loc[aggregated, "95%"] *= 1.2  # type: ignore[union-attr]
    table = rows(compare_runs(a, b))
    assert table["back to baseline"][3] == SAME
    assert table["latency p50"][3] == SAME
    assert table["latency p95"][3] == WORSE
    assert compare_runs(a, b).exit_code == 0  # latency is context, not a leak figure

    b.summary = dict(b.summary, recovery_s=(a.summary or {})["recovery_s"] + 5, leaked=1)
    comparison = compare_runs(a, b)
    assert rows(comparison)["back to baseline"][3] == WORSE
    assert rows(comparison)["leaked connections"] == ("0", "1", "+1", WORSE)  # one connection is a leak
    assert comparison.exit_code == 1


def test_different_setups_are_named(synthetic: dict[str, Path]) -> None:
    a, b = load_run(synthetic["PASS"]), load_run(synthetic["LEAK"])
    b.run = {**b.run, "config": {**b.run["config"], "users": 80}}
    assert compare_runs(a, b).differences == ["users 40 → 80"]


def test_the_page_is_self_contained(synthetic: dict[str, Path], tmp_path: Path) -> None:
    comparison, path = write_compare(synthetic["PASS"], synthetic["LEAK"], tmp_path)
    assert path == tmp_path / "compare.html"  # a folder as --out gets compare.html inside
    page = path.read_text()
    assert_self_contained(page)
    assert page.startswith("<!DOCTYPE html>")
    assert '<section class="verdict leak"><div><div class="word">WORSE</div>' in page
    leaks = page[page.index("<h2>Leaks</h2>") : page.index("<h2>Traffic during the load</h2>")]
    assert len(re.findall(r'<tr class="leak">', leaks)) == len(comparison.worse) == 5
    assert "<b>failed: timeout</b>" in page and "<b>latency p95</b>" in page and "<b>requests/s</b>" in page
    assert not list(tmp_path.glob(".compare.html.*")), "temporary file left behind"
