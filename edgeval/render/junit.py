"""JUnit XML: one ``<testsuite name="edgeval">``, a ``<testcase>`` per check and per report-level error.

``classname`` is ``edgeval.<validator>`` and ``name`` the check id; a failed check carries ``<failure>``, an
errored one ``<error>`` (``type`` = its error kind). A report without any check or error gets one erroring
testcase (``run.no_checks``), so that a CI reading only JUnit fails closed, like the verdict.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from ..report import Check, Report
from .common import fmt_value, status_counts

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: Any) -> str:
    """Text that XML 1.0 can carry (control characters dropped)."""
    return _XML_BAD.sub("", "" if text is None else str(text))


def _detail(c: Check) -> str:
    return _x(f"{c.message}\nmetric={c.metric} value={fmt_value(c.value)} baseline={fmt_value(c.baseline_value)} "
              f"threshold={fmt_value(c.threshold)} direction={c.direction}")


def _testcase(suite: ET.Element, classname: str, name: str, outcome: str | None, message: str,
              kind: str, text: str) -> None:
    case = ET.SubElement(suite, "testcase", classname=_x(classname), name=_x(name), time="0")
    if outcome:
        ET.SubElement(case, outcome, message=_x(message), type=_x(kind)).text = text
    else:
        ET.SubElement(case, "system-out").text = text


def to_junit(report: Report) -> str:
    """JUnit XML: ``<testsuites><testsuite name="edgeval">`` with a testcase per check and per input error."""
    counts = status_counts(report)
    errors = counts["error"] + len(report.errors) + (0 if report.checks or report.errors else 1)
    tests = len(report.checks) + len(report.errors) + (0 if report.checks or report.errors else 1)
    # an inconclusive check is not a pass: JUnit viewers show it as a failure of type "inconclusive"
    totals = {"tests": str(tests), "failures": str(counts["fail"] + counts["inconclusive"]), "errors": str(errors),
              "time": f"{float(report.run.get('duration_s') or 0):.3f}"}
    root = ET.Element("testsuites", {"name": "edgeval", **totals})
    suite = ET.SubElement(root, "testsuite", {"name": "edgeval", "skipped": "0", "timestamp": _x(report.created_at),
                                              **totals})
    props = ET.SubElement(suite, "properties")
    for name, value in _junit_properties(report).items():
        ET.SubElement(props, "property", name=name, value=_x(value))
    for c in report.checks:
        outcome = {"fail": "failure", "inconclusive": "failure", "error": "error"}.get(c.status)
        kind = "inconclusive" if c.status == "inconclusive" else c.error_kind or c.metric
        _testcase(suite, f"edgeval.{c.validator}", c.id, outcome, c.message, kind, _detail(c))
    for e in report.errors:
        _testcase(suite, "edgeval.input", f"input.{e.source}", "error", e.message, e.kind, _x(e.message))
    if not report.checks and not report.errors:
        _testcase(suite, "edgeval.run", "run.no_checks", "error", "no check ran: the verdict is error",
                  "internal", "no check ran")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_properties(report: Report) -> dict[str, Any]:
    base = report.baseline or {}
    return {"verdict": report.verdict, "exit_code": report.exit_code, "edgeval_version": report.tool_version,
            "candidate_path": report.candidate.get("path"), "candidate_sha256": report.candidate.get("sha256"),
            "baseline_path": base.get("path"), "baseline_sha256": base.get("sha256")}
