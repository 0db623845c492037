"""--isolate: each chaos kind alone; the verdict names the kinds that leak, with their rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import drainwatch, leftovers

pytestmark = pytest.mark.slow
TINY = ["--warmup", "2s", "--baseline", "2s", "--duration", "5s", "--settle", "4s", "--probe-timeout", "3s", "-q"]


@pytest.mark.parametrize(("variant", "code"), [("leaky", 1), ("fixed", 0)])
def test_isolate_names_the_leaking_kinds(variant: str, code: int, tmp_path: Path) -> None:
    proc = drainwatch(
        "run", "--isolate", "--variant", variant, "--out", str(tmp_path), "--run-id", "i", *TINY, timeout=400
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    record = json.loads((tmp_path / "i" / "run.json").read_text())
    isolation = record["isolation"]
    assert list(isolation) == ["steady", "disconnect", "timeout", "error"]
    verdicts = {kind: row["verdict"] for kind, row in isolation.items()}
    if variant == "leaky":
        assert verdicts == {"steady": "PASS", "disconnect": "LEAK", "timeout": "LEAK", "error": "LEAK"}
        for kind in ("disconnect", "timeout", "error"):
            assert isolation[kind]["leaked"] > 0 and isolation[kind]["per_1000"] > 0
        assert isolation["disconnect"]["endpoints"]["POST /chat"]["leaked"] > 0
        summary = json.loads((tmp_path / "i" / "summary.json").read_text())
        assert (
            summary["reasons"][0].startswith("leaked under disconnect (")
            and summary["reasons"][1] == "clean under steady"
        )
    else:
        assert set(verdicts.values()) == {"PASS"}
    assert leftovers(tmp_path / "i") == {}  # every restarted target too
    report = (tmp_path / "i" / "report.html").read_text()
    assert "Each chaos kind alone" in report and "locust_stats_history.csv is missing" not in report


def test_sweep_disconnect_shows_the_race_window(tmp_path: Path) -> None:
    """Hanging up mid-stream leaks on the leaky /chat; hanging up after the stream has ended cannot."""
    proc = drainwatch(
        "run",
        "--sweep-disconnect",
        "0,150,1500",
        "--users",
        "4",
        "--out",
        str(tmp_path),
        "--run-id",
        "s",
        *TINY,
        timeout=400,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    sweep = {row["after_ms"]: row for row in json.loads((tmp_path / "s" / "run.json").read_text())["sweep"]}
    assert sweep[0.0]["requests"] > 0
    assert sweep[150.0]["verdict"] == "LEAK" and sweep[150.0]["probability"] > 0
    assert sweep[1500.0]["verdict"] == "PASS" and sweep[1500.0]["leaked"] == 0
    assert "Disconnect sweep" in (tmp_path / "s" / "report.html").read_text()
