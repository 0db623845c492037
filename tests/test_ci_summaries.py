"""CI summaries: summary.md in every run folder (and in $GITHUB_STEP_SUMMARY), and the example
workflows in examples/ci/, checked against the real CLI. Fast: synthetic run folders, no run.

The workflows are read with PyYAML (a YAML parser is the only way to see what GitHub and GitLab
see: folded scalars, quoting); each shell line of their steps is split as the shell does, and every
``drainwatch …`` command in it is parsed by the real Click command, as tests/test_compose.py does
for the compose stack.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from drainwatch.cli import commands as cli_commands
from drainwatch.cli import run_options
from drainwatch.plan import validate
from drainwatch.report.outputs import STEP_SUMMARY_ENV, write_summary_md
from drainwatch.rundir import RUN_JSON, SUMMARY_JSON, SUMMARY_MD, read_json
from tests.rundirs import make_rundir

REPO = Path(__file__).resolve().parent.parent
GITHUB = REPO / "examples" / "ci" / "github-actions.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"
SHORT = 0.03  # hours: 108 s, enough for every phase
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", "!", "then", "do", "else"}
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")  # GitHub's ${{ … }}, replaced before the shell sees the line


# --- the example workflows ------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a YAML mapping"
    return data


def github_scripts() -> list[str]:
    workflow = load(GITHUB)
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    return {name: job for name, job in load(GITLAB).items() if isinstance(job, dict) and "script" in job}


def gitlab_scripts() -> list[str]:
    scripts: list[str] = []
    for job in gitlab_jobs().values():
        for key in ("before_script", "script", "after_script"):
            entries = job.get(key) or []
            scripts += [entries] if isinstance(entries, str) else [str(entry) for entry in entries]
    return scripts


def drainwatch_commands(script: str) -> list[list[str]]:
    """The arguments of every ``drainwatch …`` command in a shell script (at a command's position,
    so ``pip install drainwatch`` is not one), lines joined at a trailing backslash."""
    found = []
    for line in _EXPRESSION.sub("x", script.replace("\\\n", " ")).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words, at_command = list(lexer), True
        for i, word in enumerate(words):
            if word in OPERATORS:
                at_command = True
            elif at_command and re.fullmatch(r"\w+=.*", word):
                continue  # VAR=value before the command
            elif at_command:
                if word == "drainwatch":
                    rest = words[i + 1 :]
                    end = next((j for j, w in enumerate(rest) if w in OPERATORS), len(rest))
                    found.append(rest[:end])
                at_command = False
    return found


WORKFLOW_COMMANDS = [
    pytest.param(args, id=f"{path.name}:{' '.join(args[:1])}")
    for path, scripts in ((GITHUB, github_scripts()), (GITLAB, gitlab_scripts()))
    for script in scripts
    for args in drainwatch_commands(script)
]


def test_the_shell_reading_finds_commands_where_a_shell_would() -> None:
    script = "pip install drainwatch\nX=1 drainwatch run -e 'GET /a' \\\n  --users 5 && drainwatch report r/  # note"
    assert drainwatch_commands(script) == [["run", "-e", "GET /a", "--users", "5"], ["report", "r/"]]


def test_each_workflow_installs_and_runs_drainwatch() -> None:
    for path, scripts in ((GITHUB, github_scripts()), (GITLAB, gitlab_scripts())):
        text = "\n".join(scripts)
        assert re.search(r"pip install .*\bdrainwatch\b", text), f"{path.name}: drainwatch is never installed"
        runs = [args for script in scripts for args in drainwatch_commands(script) if args[:1] == ["run"]]
        assert runs, f"{path.name}: no `drainwatch run`"
        for args in runs:
            assert "--serve" in args and "{port}" in args[args.index("--serve") + 1], f"{path.name}: {args}"


@pytest.mark.parametrize("args", WORKFLOW_COMMANDS)
def test_workflow_command_parses_with_the_real_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Subcommand, options and values as the real CLI reads them, then the checks `drainwatch run` makes."""
    sub, rest = args[0], args[1:]
    command = cli_commands.cli.commands.get(sub)
    assert command is not None, f"drainwatch has no subcommand {sub!r} (it has {sorted(cli_commands.cli.commands)})"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [arg for arg in rest if arg.startswith("-") and arg.split("=")[0] not in known]
    assert not unknown, f"`drainwatch {sub}` has no option {unknown} (it has {sorted(known)})"

    for name in [n for n in os.environ if n.startswith("DRAINWATCH_")]:
        monkeypatch.delenv(name)  # the developer's shell must not fill in what the CI job lacks
    monkeypatch.chdir(tmp_path)  # no drainwatch.toml of this repository's is found
    ctx = command.make_context(f"drainwatch {sub}", list(rest))  # raises on a missing or bad option
    if sub == "run":
        config = ctx.params.pop("config_path")
        plan = run_options.plan_from(ctx, config, dict(ctx.params))
        assert plan.out == Path("reports"), "the workflows upload reports/: keep the default --out"
        validate(replace(plan, out=tmp_path / "reports"))


def test_github_uploads_the_run_folder_and_publishes_junit_even_on_a_leak() -> None:
    workflow = load(GITHUB)
    assert set(workflow.get("on", workflow.get(True)) or {}) >= {"pull_request"}  # PyYAML reads `on` as True
    [job] = workflow["jobs"].values()
    steps = job["steps"]
    uses = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}
    upload = uses["actions/upload-artifact"]
    junit = uses["mikepenz/action-junit-report"]
    comment = uses["marocchino/sticky-pull-request-comment"]
    assert upload["with"]["path"].startswith("reports/")
    assert junit["with"]["report_paths"].endswith("/junit.xml")
    assert comment["with"]["path"].endswith("/summary.md")
    for step in (upload, junit, comment):  # a LEAK exits 1: what follows must still run
        assert "!cancelled()" in step["if"] or "always()" in step["if"], step.get("name")
    assert workflow["permissions"]["checks"] == "write" and workflow["permissions"]["pull-requests"] == "write"


def test_gitlab_keeps_the_run_folder_and_its_junit_even_on_a_leak() -> None:
    [job] = gitlab_jobs().values()
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert "reports/" in artifacts["paths"]
    assert artifacts["reports"]["junit"] == "reports/*/junit.xml"


# --- summary.md -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leak(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rundir(tmp_path_factory.mktemp("leak") / "run-leak", SHORT, 4, "LEAK")


@pytest.fixture(autouse=True)
def no_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test run inside GitHub Actions must not write into its own job summary."""
    monkeypatch.delenv(STEP_SUMMARY_ENV, raising=False)


def test_leak_summary(leak: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(step_summary))
    path = write_summary_md(leak)
    assert path == leak / SUMMARY_MD
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "## ❌ drainwatch: LEAK"
    assert "**LEAK**: 5 connection(s) not given back after traffic stopped." in lines
    assert (
        "| `drain` | ❌ fail | 15 connections after settle, 5 over baseline 10 (tolerance 0) and not idle in their pool |"
        in lines
    )
    assert "| `probe` | ✅ pass | 3/3 probe requests served |" in lines
    assert "| total | 10 | 30 | 15 |" in lines
    assert (
        "- **leaked**: 5 (3 held idle, 2 idle in transaction, held for up to 52.8s); 10 idle back in their pool"
        in lines
    )
    # leaked connections by route, by scenario and by statement
    assert lines[lines.index("| route | connections |") + 2] == "| `chat` | 2 |"
    assert "| `timeout` | 1 |" in lines
    assert "| `SELECT id, body FROM messages WHERE chat_id = ?` | 3 |" in lines
    assert "| `INSERT INTO orders (item, qty) VALUES (?, ?)` | 2 |" in lines
    # the diagnosis
    at = lines.index(
        "- **idle in transaction after traffic stopped**: 2 connection(s) idle in transaction, oldest 35.2s; "
        "left by chat (2), orders (2), report (1)"
    )
    assert lines[at + 1].startswith("  - likely cause: a commit or rollback missing on an error path")
    assert lines[at + 2].startswith("  - fix: async with session_factory() as session, session.begin()")
    assert lines[-1].startswith("<sub>drainwatch ") and "(completed, exit code 1)" in lines[-1]
    # appended to the job summary, after what earlier steps wrote
    assert step_summary.read_text() == "earlier step\n" + text + "\n"
    write_summary_md(leak)
    assert step_summary.read_text() == "earlier step\n" + text + "\n" + text + "\n"


def test_pass_summary(tmp_path: Path) -> None:
    text = write_summary_md(make_rundir(tmp_path / "run-pass", SHORT, 4, "PASS")).read_text()
    lines = text.splitlines()
    assert lines[0] == "## ✅ drainwatch: PASS"
    assert (
        "**PASS**: connections back to baseline (10) 3.0s after traffic stopped; no connection left in use; "
        "the service still serves." in lines
    )
    assert "| `drain` | ✅ pass | 10 connections after settle, baseline 10 |" in lines
    assert "- **leaked**: 0; 10 idle back in their pool" in lines
    assert "### Leaked connections" not in text and "### Diagnosis" not in text and "❌" not in text


def test_a_run_without_summary_json_says_it_has_no_verdict(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "run-cut", SHORT, 4, status="interrupted")
    (run_dir / SUMMARY_JSON).unlink()  # killed before the verdict was written
    lines = write_summary_md(run_dir).read_text().splitlines()
    assert lines[0] == "## ⏹️ drainwatch: NO VERDICT"
    assert "**NO VERDICT**: the run was interrupted during the `load` phase, before a verdict." in lines
    assert "> summary.json is missing: this summary is written from run.json." in lines
    assert "(interrupted)" in lines[-1] and "exit code" not in lines[-1]

    (run_dir / RUN_JSON).unlink()  # nothing at all: still a summary.md that says so
    text = write_summary_md(run_dir).read_text()
    assert "**NO VERDICT**: the run did not reach a verdict (unknown)." in text
    assert "> summary.json and run.json are missing: the run folder holds no record of the run." in text


def test_an_error_keeps_its_message_and_never_a_password(tmp_path: Path) -> None:
    run_dir = make_rundir(tmp_path / "run-err", SHORT, 4, status="interrupted")
    (run_dir / SUMMARY_JSON).unlink()
    record = read_json(run_dir / RUN_JSON)
    record.update(status="error", error="DatabaseProblem: cannot reach postgresql://app:s3cret@db.internal/app")
    record["phases"] = {"provision": [record["started"], None]}
    (run_dir / RUN_JSON).write_text(json.dumps(record))
    text = write_summary_md(run_dir).read_text()
    assert "**NO VERDICT**: the run stopped with an error during the `provision` phase, before a verdict." in text
    assert "```\nDatabaseProblem: cannot reach postgresql://app:***@db.internal/app\n```" in text
    assert "s3cret" not in text


def test_what_execute_writes_from(leak: Path, tmp_path: Path) -> None:
    """The data summary.json is written from, as execute passes it: attribution, and text that is not Markdown."""
    data = read_json(leak / SUMMARY_JSON)
    data["attribution"] = {
        "statements": {"SELECT a || b FROM t": 4, "SELECT `x`": 1, "UPDATE users SET password = ?": 1},
        "likely": {"error GET /api/report": 4},
        "attributed": 4,
        "of": 5,
    }
    data["checks"][0]["detail"] = "<script>alert(1)</script> *not bold* | not a cell"
    data["reasons"].append("the target at postgresql://app:s3cret@db/app is down")
    lines = write_summary_md(tmp_path, data).read_text().splitlines()
    assert "| `SELECT a \\|\\| b FROM t` | 4 |" in lines
    assert "| `` SELECT `x` `` | 1 |" in lines  # one space each side, stripped by the renderer
    assert "| `UPDATE users SET password = ?` | 1 |" in lines  # a statement's literals are gone already
    caption = "**By the most likely request** (in flight when the connection last changed state; 4 of 5 attributed)"
    assert lines[lines.index(caption) + 4] == "| `error GET /api/report` | 4 |"
    assert "| `drain` | ❌ fail | \\<script\\>alert(1)\\</script\\> \\*not bold\\* \\| not a cell |" in lines
    assert "- the target at postgresql://app:\\*\\*\\*@db/app is down" in lines
    assert "s3cret" not in "\n".join(lines)


def test_execute_writes_summary_md_with_the_other_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The call in drainwatch.run.execute._write_outputs, with a run that never got its verdict."""
    import drainwatch.report
    from drainwatch.run import execute

    monkeypatch.setattr(drainwatch.report, "render_report", lambda run_dir: run_dir / "report.html")
    run_dir = make_rundir(tmp_path / "run-cut", SHORT, 4, status="interrupted")
    (run_dir / SUMMARY_JSON).unlink()
    record = SimpleNamespace(data=read_json(run_dir / RUN_JSON))
    step_summary = tmp_path / "step_summary.md"
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(step_summary))
    execute._write_outputs(run_dir, record, None, SimpleNamespace(prod_rps=None))  # type: ignore[arg-type]
    text = (run_dir / SUMMARY_MD).read_text()
    assert "**NO VERDICT**: the run was interrupted during the `load` phase, before a verdict." in text
    assert "missing" not in text  # written from the summary data, not read back
    assert step_summary.read_text() == text + "\n"
    assert (run_dir / SUMMARY_JSON).exists() and (run_dir / "junit.xml").exists()
