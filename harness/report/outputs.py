"""The run's machine-readable outcome: ``summary.json`` (versioned schema) and ``junit.xml``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from drainwatch.judge.verdict import Verdict
from drainwatch.rundir import JUNIT_XML, SUMMARY_JSON, SUMMARY_SCHEMA, write_json


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
        data["diagnosis"] = diagnose(verdict)
    data.update(extra)
    return data


def write_summary(run_dir: Path, record: dict[str, Any], verdict: Verdict | None, extra: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY_JSON, summary(record, verdict, extra))


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
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    tree.write(run_dir / JUNIT_XML, encoding="utf-8", xml_declaration=True)
