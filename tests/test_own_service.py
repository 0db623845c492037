"""Bring your own service: a config file, a locustfile of your own, Locust workers, Prometheus."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drainwatch.demo_service import app_name
from drainwatch.provision.processes import free_port
from tests.conftest import REPO, demo_service
from tests.helpers import FAST, SHORT_PHASES, SYSTEM_DSN, drainwatch, needs_system_pg

pytestmark = pytest.mark.slow


@needs_system_pg
@pytest.mark.parametrize(("variant", "verdict", "code"), [("leaky", "LEAK", 1), ("fixed", "PASS", 0)])
def test_config_file_alone_drives_a_run(variant: str, verdict: str, code: int, tmp_path: Path) -> None:
    with demo_service(SYSTEM_DSN, variant, tmp_path / "target.log") as url:
        config = (REPO / "examples" / "demo-service.toml").read_text().replace("http://127.0.0.1:8000", url)
        (tmp_path / "drainwatch.toml").write_text(config + '\n[output]\nout = "runs"\n')
        proc = drainwatch("run", "--run-id", variant, "-q", cwd=tmp_path)  # found in the current folder
    assert proc.returncode == code, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "runs" / variant / "summary.json").read_text())
    assert summary["verdict"] == verdict
    record = json.loads((tmp_path / "runs" / variant / "run.json").read_text())
    assert record["config"]["config_file"] == str(tmp_path / "drainwatch.toml")
    assert record["config"]["duration"] == 15.0 and record["target"]["url"] == url


def test_unknown_config_key_names_the_nearest(tmp_path: Path) -> None:
    (tmp_path / "drainwatch.toml").write_text("[load]\nuser = 20\n")
    proc = drainwatch("run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown key 'load.user' in drainwatch.toml — hint: did you mean 'load.users'?"


def test_init_writes_a_starter_that_loads(tmp_path: Path) -> None:
    assert drainwatch("init", cwd=tmp_path).returncode == 0
    from drainwatch.configfile import load

    options, env = load(tmp_path / "drainwatch.toml")
    assert options["users"] == 20 and "DRAINWATCH_DISCONNECT" in env
    assert drainwatch("init", cwd=tmp_path).returncode == 2  # never overwrites


def test_own_locustfile(tmp_path: Path) -> None:
    locustfile = tmp_path / "mine.py"
    locustfile.write_text(
        "from locust import task\nfrom drainwatch.scenarios.chaos import ChaosUser\n\n\n"
        "class Mine(ChaosUser):\n"
        "    @task\n"
        "    def browse(self):\n"
        "        self.steady(self.endpoint('GET', '/items'))\n"
        "        self.error(self.endpoint('POST', '/orders?fail=1'))\n"
    )
    proc = drainwatch(
        "run", "--locustfile", str(locustfile), "--variant", "fixed", "--out", str(tmp_path), "--run-id", "mine", *FAST
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stats = (tmp_path / "mine" / "locust_stats.csv").read_text()
    assert "steady GET /items" in stats and "error POST /orders" in stats
    assert "disconnect" not in stats  # the user's load phase, not the default mix


def test_workers_and_prometheus_endpoint(tmp_path: Path) -> None:
    """--workers 2: both workers send traffic, the master merges their stats; /metrics answers during the run."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drainwatch",
            "run",
            "--variant",
            "fixed",
            "--workers",
            "2",
            "--metrics-port",
            str(port),
            "--out",
            str(tmp_path),
            "--run-id",
            "w",
            *SHORT_PHASES,
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ,
    )
    scraped, first, clients = "", None, {}
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            record = json.loads((tmp_path / "w" / "run.json").read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("current_phase") == "load":
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                seen = httpx.get(record["target"]["url"] + "/stats", timeout=2).json()["clients"]
            except httpx.HTTPError:
                continue
            if first is None:
                first = (time.monotonic(), seen)  # warm-up's own workers are in it: count what the load adds
                continue
            clients = {name: n - first[1].get(name, 0) for name, n in seen.items() if n > first[1].get(name, 0)}
            senders = [n for name, n in clients.items() if name.startswith("locust-")]
            # on a busy machine a worker's users may start a few seconds after the other's
            if time.monotonic() - first[0] >= 3 and (len(senders) == 2 and min(senders) > 10):
                break
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "drainwatch_up 1" in scraped and 'drainwatch_connections{state="idle"}' in scraped
    check_scrape(scraped, tmp_path / "w" / "samples.csv")
    record = json.loads((tmp_path / "w" / "run.json").read_text())
    assert {"locust-worker-1", "locust-worker-2"} <= set(record["processes"])
    senders = {name: n for name, n in clients.items() if name.startswith("locust-")}
    assert len(senders) == 2 and all(n > 10 for n in senders.values()), clients
    assert "Aggregated" in (tmp_path / "w" / "locust_stats.csv").read_text()


def check_scrape(scraped: str, samples_csv: Path) -> None:
    """The scrape parses as Prometheus text, names the demo's pools the OpenTelemetry way, and
    its counts add up to its own total and to the reading the collector wrote for the same time."""
    families = {family.name: family.samples for family in text_string_to_metric_families(scraped)}
    otel = families["db_client_connection_count"]
    assert {s.labels["state"] for s in otel} == {"idle", "used"}, otel
    pools = {s.labels["pool_name"] for s in otel}
    assert pools and pools <= {f"{app_name('fixed')}:sa", f"{app_name('fixed')}:raw"}, pools
    (total,) = [s.value for s in families["drainwatch_connections_total"]]
    idle = {s.labels["state"]: s.value for s in families["drainwatch_connections"]}["idle"]
    assert sum(s.value for s in otel) == total > 0, scraped
    assert sum(s.value for s in otel if s.labels["state"] == "idle") == idle, scraped
    (t,) = [s.value for s in families["drainwatch_sample_timestamp_seconds"]]
    with samples_csv.open(newline="") as handle:
        (row,) = [row for row in csv.DictReader(handle) if float(row["t"]) == t]
    assert (float(row["total"]), float(row["idle"])) == (total, idle), row


def test_a_locustfile_that_sends_nothing_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "from locust import task\nfrom drainwatch.scenarios.chaos import ChaosUser\n\n\n"
        "class Broken(ChaosUser):\n"
        "    @task\n"
        "    def oops(self):\n"
        "        raise RuntimeError('a typo in the locustfile')\n"
    )
    proc = drainwatch(
        "run", "--locustfile", str(broken), "--variant", "fixed", "--out", str(tmp_path), "--run-id", "b", *FAST
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["verdict"] == "ERROR" and summary["evidence"] == ["no_load"]
    assert "sent no request" in summary["reasons"][0]


def test_a_locustfile_that_cannot_be_imported_is_an_error_not_a_pass(tmp_path: Path) -> None:
    """Locust exits 1 for an import error as for a run with failures, and a run that went on would
    judge a load that never ran: drainwatch has Locust load the file first and says what it said."""
    broken = tmp_path / "typo.py"
    broken.write_text(
        "from locust import task\nfrom drainwatch.scenarios.chaoss import ChaosUser\n\n\n"
        "class Typo(ChaosUser):\n"
        "    @task\n"
        "    def browse(self):\n"
        "        self.steady(self.endpoint('GET', '/items'))\n"
    )
    proc = drainwatch(
        "run", "--locustfile", str(broken), "--variant", "fixed", "--out", str(tmp_path), "--run-id", "t", *FAST
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and "No module named 'drainwatch.scenarios.chaoss'" in error[0], proc.stderr
    assert f"locust -f {broken} --list" in error[0]  # how to see the whole error
    assert not (tmp_path / "t").exists()  # found before anything started
