"""The run's outcome for machines and CI: ``summary.json`` (versioned schema), ``junit.xml``,
and ``summary.md`` (GitHub-flavoured Markdown for a job summary or a pull-request comment)."""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from drainwatch import __version__
from drainwatch.judge.verdict import Verdict
from drainwatch.plan import redact_dsn
from drainwatch.report import words
from drainwatch.rundir import JUNIT_XML, RUN_JSON, SUMMARY_JSON, SUMMARY_MD, SUMMARY_SCHEMA, read_json, write_json

log = logging.getLogger(__name__)
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"  # GitHub Actions' job summary file, appended to when set


def summary(record: dict[str, Any], verdict: Verdict | None, extra: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "run_id": record["run_id"],
        "status": record["status"],
        "error": record.get("error"),
        "phases": record["phases"],
    }
    if verdict is None:
        data.update(verdict=None, reasons=[f"the run did not reach a verdict ({record['status']})"], checks=[])
    else:
        from drainwatch.judge.diagnosis import diagnose

        data.update(verdict.to_dict())
        # in the words of the stack the service's processes imported (none known for the demo or a URL)
        stack = (record.get("target") or {}).get("versions") or {}
        data["diagnosis"] = diagnose(verdict, stack=[name for name in stack if name != "python"])
    data.update(extra)
    return data


def write_summary(
    run_dir: Path, record: dict[str, Any], verdict: Verdict | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write ``summary.json``; returns what it wrote (``write_summary_md`` renders the same)."""
    data = summary(record, verdict, extra)
    write_json(run_dir / SUMMARY_JSON, data)
    return data


def write_junit(run_dir: Path, record: dict[str, Any], verdict: Verdict | None) -> None:
    """One test case per check, so a CI system shows which one failed and its numbers."""
    suite = ET.Element("testsuite", name=f"drainwatch {record['run_id']}")
    cases: list[tuple[str, bool | None, str]] = []
    if verdict is None:
        cases.append(("run", None, f"the run did not reach a verdict: {record['status']} {record.get('error') or ''}"))
    else:
        for check in verdict.checks:
            numbers = ", ".join(f"{k}={v}" for k, v in check.numbers.items())
            cases.append((check.name, check.passed, f"{check.detail} ({numbers})"))
        for scenario, count in sorted(verdict.scenarios.items()):
            cases.append((f"scenario:{scenario}", False, f"{count} connection(s) left open by {scenario} requests"))
    failures = errors = 0
    for name, passed, message in cases:
        case = ET.SubElement(suite, "testcase", classname="drainwatch", name=name)
        if passed is None:
            errors += 1
            ET.SubElement(case, "error", message=message).text = message
        elif not passed:
            failures += 1
            ET.SubElement(case, "failure", message=message).text = message
        else:
            ET.SubElement(case, "system-out").text = message
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(run_dir / JUNIT_XML, encoding="utf-8", xml_declaration=True)


# --- summary.md ----------------------------------------------------------------------------

_ICON = {"PASS": "✅", "LEAK": "❌", "SATURATED": "🟧", "ERROR": "⚠️"}
_EXIT = {"PASS": 0, "LEAK": 1, "SATURATED": 4, "ERROR": 2}
_SPECIAL = re.compile(r"([\\`*\[\]<>~|])")
_LONE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # snake_case stays readable
_BACKTICKS = re.compile(r"`+")


def write_summary_md(run_dir: Path, data: Mapping[str, Any] | None = None) -> Path:
    """Write ``summary.md`` into the run folder and, when ``$GITHUB_STEP_SUMMARY`` is set,
    append it there (GitHub Actions shows that file as the job summary). Returns its path.

    ``data`` is what ``summary.json`` is written from (``summary()``); without it the run
    folder's ``summary.json`` is read, else its ``run.json`` (a run killed before its verdict).
    """
    notes: list[str] = []
    if data is None:
        data, notes = _summary_from(run_dir)
    text = summary_markdown(data, run_dir, notes)
    path = run_dir / SUMMARY_MD
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    step_summary = os.environ.get(STEP_SUMMARY_ENV)
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            log.warning("could not append %s to $%s (%s): %s", SUMMARY_MD, STEP_SUMMARY_ENV, step_summary, exc)
    return path


def _summary_from(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        return read_json(run_dir / SUMMARY_JSON), []
    except (OSError, ValueError):
        pass
    try:
        data = summary(read_json(run_dir / RUN_JSON), None, {})
        return data, [f"{SUMMARY_JSON} is missing: this summary is written from {RUN_JSON}."]
    except (OSError, ValueError, KeyError, TypeError):
        data = {"run_id": run_dir.name, "status": "unknown", "error": None, "phases": {}, "verdict": None}
        return data, [f"{SUMMARY_JSON} and {RUN_JSON} are missing: the run folder holds no record of the run."]


def summary_markdown(data: Mapping[str, Any], run_dir: Path | None = None, notes: list[str] | None = None) -> str:
    """The summary as GitHub-flavoured Markdown: verdict, figures, checks, leaked connections, diagnosis."""
    outcome = data.get("verdict")
    lines = [f"## {_ICON.get(outcome or '', '⏹️')} drainwatch: {outcome or 'NO VERDICT'}", ""]
    if outcome is None:
        lines += _no_verdict(data)
    else:
        lines += _verdict(data, outcome)
    lines += [f"> {_text(note)}" for note in notes or []]
    if notes:
        lines.append("")
    run_id = _code(str(data.get("run_id")), cell=False)
    status = _text(str(data.get("status")))
    if outcome in _EXIT:
        status += f", exit code {_EXIT[outcome]}"
    where = f" · run folder {_code(f'{run_dir}/', cell=False)}: report.html, junit.xml" if run_dir is not None else ""
    lines.append(f"<sub>drainwatch {__version__} · run {run_id} ({status}){where}</sub>")
    return "\n".join(lines) + "\n"


def _no_verdict(data: Mapping[str, Any]) -> list[str]:
    status = data.get("status")
    phases = data.get("phases") or {}
    unfinished = [name for name, span in phases.items() if not span or span[-1] is None]
    phase = unfinished[-1] if unfinished else (list(phases)[-1] if phases else None)
    during = f" during the {_code(phase, cell=False)} phase" if phase else " before its first phase"
    if status == "interrupted":
        headline = f"the run was interrupted{during}, before a verdict."
    elif status == "error":
        headline = f"the run stopped with an error{during}, before a verdict."
    elif status == "completed":
        headline = "the run completed, but its verdict was not written (see the console output and logs/)."
    else:
        headline = f"the run did not reach a verdict ({_text(str(status))})."
    lines = [f"**NO VERDICT**: {headline}", ""]
    if data.get("error"):
        lines += [*_fenced(str(data["error"])), ""]
    if phases:
        lines += ["What it collected until then is in the run folder; its report.html shows it.", ""]
    return lines


def _verdict(data: Mapping[str, Any], outcome: str) -> list[str]:
    reasons = list(data.get("reasons") or [])
    if outcome == "LEAK":
        headline = f"{words.leaked_count(data)} connection(s) not given back after traffic stopped"
        if not data.get("leaked_exact", True):
            headline += " (the probe or the server saw the leak, no row shows all of it: the count is a floor)"
    else:
        headline = reasons.pop(0) if reasons else outcome.lower()
    lines = [f"**{outcome}**: {_text(headline).removesuffix('.')}.", ""]
    checks = data.get("checks") or []
    details = {str(check.get("detail")) for check in checks}
    notes = [reason for reason in reasons if reason not in details]  # the failed checks are in the table
    if notes:
        lines += [*(f"- {_text(note)}" for note in notes), ""]
    lines += _checks(checks)
    lines += _figures(data)
    lines += _leaked(data)
    lines += _diagnosis(data.get("diagnosis") or [])
    return lines


def _spans(spans: Sequence[words.Span]) -> str:
    return "".join(_code(s.text, cell=False) if isinstance(s, words.Code) else _text(s) for s in spans)


def _figures(data: Mapping[str, Any]) -> list[str]:
    levels = [data.get(key) or {} for key in ("baseline", "peak", "final")]
    lines = ["### Connections", "", "| connections | baseline | peak | final |", "| --- | ---: | ---: | ---: |"]
    for key, label in (("total", "total"), ("active", "active"), ("idle", "idle")):
        lines.append(f"| {label} | " + " | ".join(_count(level.get(key)) for level in levels) + " |")
    lines.append(
        "| idle in transaction | "
        + " | ".join(
            _count((level.get("idle_in_transaction") or 0) + (level.get("idle_in_transaction_aborted") or 0))
            for level in levels
        )
        + " |"
    )
    lines.append("")
    facts = [f"**{fact.label}**: " + _spans(fact.spans) for fact in words.facts(data)]
    return [*lines, *(f"- {fact}" for fact in facts), ""]


def _checks(checks: list[Mapping[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = ["### Checks", "", "| check | result | detail |", "| --- | --- | --- |"]
    for check in checks:
        result = "✅ pass" if check.get("passed") else "❌ fail"
        lines.append(f"| {_code(str(check.get('name')))} | {result} | {_cell(str(check.get('detail', '')))} |")
    return [*lines, ""]


def _leaked(data: Mapping[str, Any]) -> list[str]:
    found = data.get("attribution") or {}
    tables: list[str] = []
    for key, caption, column in (
        ("routes", "**By route** (from the SQL tags)", "route"),
        ("scenarios", "**By chaos scenario**", "scenario"),
    ):
        counts = data.get(key) or {}
        if any(name != "unknown" for name in counts):
            tables += _count_table(caption, column, counts)
    if found.get("sites"):
        tables += _count_table(
            "**By call site** (where the app checked the connection out)", "taken at", found["sites"]
        )
    if found.get("statements"):
        tables += _count_table("**By statement** (the connection's last statement)", "statement", found["statements"])
    if found.get("likely"):
        caption = (
            "**By the most likely request** (in flight when the connection last changed state; "
            f"{found.get('attributed', 0)} of {found.get('of', 0)} attributed)"
        )
        tables += _count_table(caption, "request", found["likely"])
    return ["### Leaked connections", "", *tables] if tables else []


def _count_table(caption: str, column: str, counts: Mapping[str, Any]) -> list[str]:
    rows = sorted(counts.items(), key=lambda kv: -int(kv[1]))
    lines = [caption, "", f"| {column} | connections |", "| --- | ---: |"]
    for name, count in rows:
        label = "*untagged*" if name == "unknown" else _code(str(name))
        lines.append(f"| {label} | {count} |")
    return [*lines, ""]


def _diagnosis(items: list[Mapping[str, Any]]) -> list[str]:
    if not items:
        return []
    lines = ["### Diagnosis", ""]
    for item in items:
        if not item.get("cause"):  # advice that holds for every leak (the guardrails)
            fix = str(item.get("fix", ""))
            lines.append(f"- {_text(fix[:1].upper() + fix[1:])}")
            continue
        evidence = f": {_text(str(item['evidence']))}" if item.get("evidence") else ""
        lines += [
            f"- **{_text(str(item.get('pattern', '')))}**{evidence}",
            f"  - likely cause: {_text(str(item['cause']))}",
            f"  - fix: {_text(str(item.get('fix', '')))}",
        ]
    return [*lines, ""]


def _count(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f}"


def _text(value: str) -> str:
    """Prose on one line, its Markdown and HTML characters shown as themselves.

    The data is redacted already; redacting again keeps a password out of any text that slipped
    through (statements need not: they are normalised, their literals gone).
    """
    flat = redact_dsn(" ".join(value.split()))
    return _LONE_UNDERSCORE.sub(r"\\_", _SPECIAL.sub(r"\\\1", flat))


def _cell(value: str) -> str:
    return _text(value)  # `|` is escaped already, and a cell is one line


def _code(value: str, *, cell: bool = True) -> str:
    """A code span that survives backticks inside and, in a table cell, ``|`` (GFM splits cells first)."""
    flat = " ".join(value.split())
    flat = flat.replace("|", "\\|") if cell else flat
    longest = max((len(run) for run in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _fenced(value: str) -> list[str]:
    value = redact_dsn(value)
    longest = max((len(run) for run in re.findall(r"`{3,}", value)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *value.rstrip().splitlines(), fence]
