"""One number formatter for every place a person reads a number: residue near zero prints as 0."""
from __future__ import annotations

import numpy as np
import pytest

from edgeval.numbers import DASH, clean, fmt_bytes, fmt_ci, fmt_fixed, fmt_ms, fmt_p, fmt_pct, fmt_sig, fmt_value
from edgeval.report import Check


@pytest.mark.parametrize("residue", [-4.857e-17, 3e-13, np.float64(-1e-15)])
def test_values_within_1e_12_of_zero_print_as_zero(residue):
    assert clean(residue) == 0.0 and fmt_value(residue) == "0" and fmt_fixed(residue) == "0.000"
    assert fmt_fixed(residue, signed=True) == "+0.000" and fmt_pct(residue) == "0.0 %"
    assert fmt_ci(residue, residue) == "[+0.000, +0.000]"


def test_small_but_real_values_keep_their_digits():
    assert fmt_value(2e-9) == "2e-09" and fmt_value(-0.012345) == "-0.01235" and fmt_p(2e-4) == "<0.001"
    assert fmt_fixed(-0.0004) == "0.000" and fmt_fixed(-0.0006) == "-0.001"  # never "-0.000"


def test_kinds_and_missing_values():
    assert fmt_value(123_456) == "123,456" and fmt_value(True) == "true" and fmt_value(None) == DASH
    assert fmt_bytes(540_123_456) == "540 MB" and fmt_bytes(None) == DASH and fmt_ms(12.345) == "12.35 ms"
    assert fmt_pct(0.125, signed=True) == "+12.5 %" and fmt_ci(None, 1.0) == ""


def test_summary_table_uses_the_formatter(capsys):
    from edgeval.cli.summary import print_summary
    from edgeval.report import Check, Report

    check = Check("bbq.delta_srs", "bbq", "pass", "delta_srs", -4.857e-17, 0.25, 0.05, "ok", "lower_is_better")
    print_summary(Report(candidate={"path": "m.onnx"}, baseline=None, policy={}, checks=(check,)), None)
    out = capsys.readouterr().out
    assert "e-17" not in out and "│ 0 " in out


def test_rendered_reports_print_residue_as_zero():
    from sample_reports import full_report

    from edgeval.render import render

    extra = Check("bbq.residue", "bbq", "pass", "delta", -4.857e-17, 0.0, 0.05, "ok", "lower_is_better")
    for fmt in ("markdown", "html"):
        text = render(full_report(extra_checks=(extra,)), fmt)
        assert "e-17" not in text and "-0.000" not in text


def test_weak_signal_is_shown_in_every_human_view(capsys):
    from sample_reports import full_report

    from edgeval.cli.summary import print_summary
    from edgeval.render import render
    from edgeval.validators.bbq.signal import signal
    from edgeval.validators.bbq.types import Prediction

    preds = [Prediction("Age", i, "ambig", "neg", 2, 2, 0, 0, scores=(0.0, -0.01, -1.0), margin=0.01,
                        order_letters=(0, 0, 0)) for i in range(10)]
    report = full_report()
    bbq = {**report.results["bbq"], "signal": {"candidate": signal(preds)}}
    report = report.replace(results={**report.results, "bbq": bbq})
    for fmt in ("markdown", "html"):
        text = render(report, fmt)
        assert "Weak signal (candidate)" in text and "(A 100%, A 100%, A 100%)" in text and "100.0 % of" in text
    print_summary(report, None)
    assert "warning bbq: Weak signal (candidate)" in " ".join(capsys.readouterr().out.split())
    quiet = report.replace(results={**report.results, "bbq": {**bbq, "signal": {}}})
    assert "Weak signal" not in render(quiet, "markdown")


def test_significant_digits_for_statistics_in_sentences():
    assert fmt_sig(0.0123456) == "0.0123" and fmt_sig(0.0123456, signed=True) == "+0.0123"
    assert fmt_sig(-4.857e-17, signed=True) == "+0" and fmt_sig(np.float64(2.5)) == "2.5"
    assert fmt_sig(None) == DASH and fmt_sig(None, missing="n/a") == "n/a"


def test_threshold_messages_use_the_shared_formatter():
    from edgeval.report import threshold_check

    check = threshold_check("x.y", "x", "m", np.float32(0.5), 1, direction="lower_is_better")
    assert check.message == "m = 0.5 <= 1" and "e-" not in threshold_check("x.y", "x", "m", 1e-17, 1).message
