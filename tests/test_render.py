"""Renderers (markdown, JUnit, HTML) and `edgeval report`, on realistic reports built without running a model."""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml
from sample_reports import bare_report, full_report

from edgeval.cli import main
from edgeval.render import FORMATS, render
from edgeval.report import Check, InputError, Report

HOSTILE = 'a | b <script>alert("x")</script> & c\nsecond line'
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"}
SVG_LEAVES = {"rect", "line", "path", "circle"}


@pytest.fixture(scope="module")
def blocked() -> Report:
    return full_report()


@pytest.fixture(scope="module")
def passing() -> Report:
    return full_report(worse=None)


@pytest.fixture(scope="module")
def errored() -> Report:
    bad = Check("perplexity.run", "perplexity", "error", "perplexity", message="NaN logits", error_kind="bad_input")
    odd = Check("size.odd", "size", "fail", "bytes", value=3, threshold=1, message=HOSTILE)
    return full_report(extra_checks=(bad, odd), errors=(InputError("policy", "bad_input", "policy.yaml: bad key"),))


# -- markdown --------------------------------------------------------------------------------------------
def test_markdown_has_verdict_and_every_check(blocked: Report) -> None:
    md = render(blocked, "markdown")
    assert blocked.verdict == "blocked" and "**Verdict: BLOCKED** (exit 1)" in md
    for check in blocked.checks:
        assert f"`{check.id}`" in md
    failing = md.split("**Checks that did not pass")[1].split("**BBQ bias**")[0]
    assert "`bbq.delta_srs`" in failing and "`size.bytes`" not in failing
    assert "| Age | 60 | 0.317 → 0.617 |" in md and "Mean over 6 categories: SRS" in md
    assert "**Size:** 542 MB on disk" in md and "**Latency:** (onnxruntime" in md


def test_markdown_is_plain_words_and_safe(passing: Report, errored: Report) -> None:
    assert "**Verdict: PASS** (exit 0)" in render(passing, "markdown")
    md = render(errored, "markdown")
    assert "**Verdict: ERROR** (exit 3)" in md and "`policy` (bad_input): policy.yaml: bad key" in md
    assert not re.search("[\U0001F000-\U0001FFFF\u2600-\u27BF]", md), "no emoji"
    assert "<script>" not in md and "&lt;script>" in md
    for line in md.splitlines():  # every row of a table has as many cells as its header
        if line.startswith("| `size.odd`"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 7


def test_markdown_without_results_or_checks() -> None:
    md = render(bare_report(), "markdown")
    assert "ERROR" in md and "No check ran" in md and "BBQ" not in md and "no baseline" in md


# -- JUnit -----------------------------------------------------------------------------------------------
def _cases(xml: str) -> list:
    suites = list(JUnitXml.fromstring(xml))
    assert len(suites) == 1 and suites[0].name == "edgeval"
    return list(suites[0])


def test_junit_round_trips_through_a_junit_parser(blocked: Report) -> None:
    xml = render(blocked, "junit")
    suite = list(JUnitXml.fromstring(xml))[0]
    cases = list(suite)
    assert len(cases) == len(blocked.checks) == suite.tests
    assert suite.failures == sum(c.status == "fail" for c in blocked.checks) and suite.errors == 0
    props = {p.name: p.value for p in suite.properties()}
    assert props["verdict"] == "blocked" and props["candidate_sha256"] == blocked.candidate["sha256"]
    for case, check in zip(cases, blocked.checks, strict=True):
        assert (case.classname, case.name) == (f"edgeval.{check.validator}", check.id)
        kinds = [type(r) for r in case.result]
        assert kinds == ({"pass": [], "fail": [Failure]}[check.status])
        if check.status == "fail":
            assert case.result[0].message == check.message


def test_junit_errors_and_input_errors(errored: Report) -> None:
    cases = _cases(render(errored, "junit"))
    assert len(cases) == len(errored.checks) + 1
    by_name = {c.name: c for c in cases}
    error = by_name["perplexity.run"].result[0]
    assert isinstance(error, Error) and error.message == "NaN logits" and error.type == "bad_input"
    assert isinstance(by_name["size.odd"].result[0], Failure) and by_name["size.odd"].result[0].message == HOSTILE
    input_case = by_name["input.policy"]
    assert input_case.classname == "edgeval.input" and isinstance(input_case.result[0], Error)


def test_junit_without_checks_fails_closed() -> None:
    cases = _cases(render(bare_report(), "junit"))
    assert [c.name for c in cases] == ["run.no_checks"] and isinstance(cases[0].result[0], Error)


# -- HTML ------------------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    """Checks that every non-void element is closed in order, and collects tag names and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        self.attrs += [name for name, _ in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        self.attrs += [name for name, _ in attrs]

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def parse_html(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return parser


def test_html_is_well_formed_and_self_contained(blocked: Report) -> None:
    page = render(blocked, "html")
    tags = parse_html(page)
    assert page.startswith("<!doctype html>") and "BLOCKED" in page
    assert tags.seen.count("svg") == 6  # SRS, s_AMB, letters, options, latency, size
    assert "script" not in tags.seen and not {"src", "href"} & set(tags.attrs)
    assert re.findall(r"https?://[^\"]+", page) == ["http://www.w3.org/2000/svg"] * 6
    for check in blocked.checks:
        assert check.id in page
    assert "whisker" in page and "chance ⅓" in page


def test_html_escapes_everything(errored: Report) -> None:
    page = render(errored, "html")
    parse_html(page)
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert "ERROR" in page and "policy.yaml: bad key" in page


def test_html_renders_what_is_there() -> None:
    partial = full_report(worse=None).replace(baseline=None, results={
        "bbq": {"categories": ["Age"], "candidate": {"overall": {"srs": 0.4, "s_amb": 0.1, "n_letter_a": 3},
                                                     "categories": {"Age": {"srs": None}}}},
        "latency": {"p50_ms": 1.5}, "size": {"bytes": 1000, "compressed_bytes": None}})
    page = render(partial, "html")
    parse_html(page)
    assert page.count("<svg") == 4 and "n/a" in page  # SRS, s_AMB (Age has no value), latency, size
    bare = render(bare_report(), "html")
    parse_html(bare)
    assert "<svg" not in bare and "No check ran" in bare


JUNK = {"bbq": {"categories": "Age", "n_items": "many",
                "candidate": {"overall": {"srs": "x", "s_amb": [1], "n_letter_a": "3", "n_letter_b": 1},
                              "categories": ["Age"]},
                "baseline": {"overall": {"srs": 0.3}},
                "comparison": {"overall": {"srs_baseline": "q", "srs_candidate": 0.5, "delta_srs_ci_low": "a",
                                           "delta_srs_ci_high": 0.1, "cohens_h": "h", "significant_increase": 1},
                               "macro": {"srs_baseline": "a", "srs_candidate": 0.2, "n_categories": 1}}},
        "latency": {"p50_ms": "x", "p90_ms": 2.0, "runtime": "ort", "ratio_to_baseline": "r", "ratio_ci95": "ci"},
        "size": {"bytes": "big", "ratio_to_baseline": "r", "weight_sparsity": "w", "summary": 5},
        "someone_elses": {"x": [1, 2]}}


@pytest.mark.parametrize("fmt", FORMATS)
def test_unexpected_result_shapes_never_crash(fmt: str) -> None:
    report = bare_report(checks=(Check("a.b", "a", "pass", "m", value=1),)).replace(results=JUNK)
    text = render(report, fmt)
    assert "a.b" in text
    if fmt == "html":
        parse_html(text)


def test_render_accepts_json_and_rejects_unknown_formats(blocked: Report) -> None:
    assert render(blocked.to_json(), "markdown") == render(blocked, "markdown")
    with pytest.raises(ValueError, match="unknown format"):
        render(blocked, "pdf")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_html_screenshot_in_headless_chromium(blocked: Report, tmp_path: Path) -> None:
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(render(blocked, "html"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
                               "--window-size=1200,1600", page.as_uri()], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    assert _png_size(png) == (1200, 1600)
    assert png.stat().st_size > 50_000  # a blank or broken page compresses to a few kB


# -- the command -----------------------------------------------------------------------------------------
def run_cli(*args: object, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_command(fmt: str, blocked: Report, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    saved = blocked.write(tmp_path / "r.json")
    code, out, _ = run_cli("report", saved, "--format", fmt, capsys=capsys)
    assert code == 0 and out == render(Report.load(saved), fmt)
    target = tmp_path / "sub" / f"out.{fmt}"
    code, out, err = run_cli("report", saved, "--format", fmt, "--out", target, capsys=capsys)
    assert code == 0 and out == "" and target.read_text(encoding="utf-8") == render(Report.load(saved), fmt)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"verdict": "pass"})])
def test_report_command_bad_input(content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli("report", path, "--format", "markdown", capsys=capsys)
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1 and str(path) in err


def test_report_command_unwritable_out(blocked: Report, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    saved = blocked.write(tmp_path / "r.json")
    (tmp_path / "file").write_text("")
    code, _, err = run_cli("report", saved, "--out", tmp_path / "file" / "out.md", capsys=capsys)
    assert code == 3 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_report_command_usage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli("report", tmp_path / "r.json", "--format", "pdf", capsys=capsys)
    assert code == 2 and "pdf" in err
