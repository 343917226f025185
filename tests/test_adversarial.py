"""The adversarial corpus: bad models, tokenizers, policies, data and paths, each tried the way a hostile or careless
user would, through the CLI. Every case asserts the exit code, ONE message line on stderr, no traceback, and, the
point of the gate, never a written pass (no report with verdict pass, no BLESSED).

Cheap by construction: crafted Gather "models" (tests/adversarial_helpers.py), the hand-written BBQ fixture, tiny
policies. Saved-predictions cases live with the predictions tests.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from adversarial_helpers import (
    assert_refused,
    copy_tokenizer,
    craft_onnx,
    move_weights_to,
    with_template,
    word_level_tokenizer,
)
from bbq_fixture import FIXTURE_DIR

from edgeval.cli import main

LATENCY = "latency: {runs: 3, warmup: 0, seq_len: 8, max_ratio_to_baseline: null}\n"
BBQ = "bbq: {limit: 6, orders: 1, bootstrap: 0}\n"


def run_cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def tok(tiny_llama_dir) -> Path:
    """The tiny Llama's tokenizer files (1000 ids, ChatML template)."""
    return tiny_llama_dir


@pytest.fixture(scope="module")
def good(tok, tmp_path_factory) -> Path:
    """A crafted model that scores (the control: the harness can see a pass)."""
    root = tmp_path_factory.mktemp("good")
    return craft_onnx(copy_tokenizer(tok, root) / "model.onnx")


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(LATENCY + BBQ)
    return path


def check(capsys, tmp_path, model, *extra, validators="latency", policy=None, bless=False):
    """``edgeval check MODEL -q`` with a report (and bless dir) in ``tmp_path``; returns code, stderr, paths."""
    report, bless_dir = tmp_path / "out" / "r.json", tmp_path / "bless"
    if policy is None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(LATENCY + BBQ)
    args = ["check", model, "--validators", validators, "--policy", policy, "--report", report, "-q", *extra]
    if "--bbq-data" not in extra:
        args += ["--bbq-data", FIXTURE_DIR]
    if bless:
        args += ["--bless-dir", bless_dir]
    code, err = run_cli(capsys, *args)
    return code, err, report, bless_dir


def test_control_a_crafted_model_can_pass(good, tmp_path, capsys):
    policy = _policy_case(LATENCY + "bbq: {limit: 6, orders: 1, bootstrap: 0, on_inconclusive: pass}\n", tmp_path)
    code, err, report, bless = check(capsys, tmp_path, good, "--baseline", good, validators="latency,bbq",
                                     bless=True, policy=policy)
    doc = json.loads(report.read_text())
    assert code == 0 and doc["verdict"] == "pass" and (bless / "BLESSED").is_file(), err


# -- models ------------------------------------------------------------------------------------------------------
MODEL_CASES = {
    "logits narrower than the tokenizer (declared)": dict(width=300),  # the tiny tokenizer has 395 ids
    "logits narrower than the tokenizer (symbolic)": dict(width=300, declared_width="vocab"),
    "hidden states named logits": dict(width=64),
    "hidden-state output listed first": dict(out_name="output_1", extra_first_output=("output_0", 64)),
    "integer output": dict(out_type="int64"),
    "rank-4 output": dict(rank=4),
    "rank-2 output narrower than the tokenizer": dict(rank=2, width=64),
    "embedding rows fewer than the tokenizer's ids": dict(rows=300),
    "NaN weights": dict(fill=math.nan),
    "infinite weights": dict(fill=math.inf),
    "float input ids": dict(ids_type="float"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
@pytest.mark.parametrize("validators", ["latency", "bbq"])
def test_bad_model_outputs(case, validators, tok, tmp_path, capsys):
    if validators == "bbq" and case in ("float input ids",):
        pytest.skip("refused at load either way: one validator is enough")
    model = craft_onnx(copy_tokenizer(tok, tmp_path / "m") / "model.onnx", **MODEL_CASES[case])
    code, err, report, bless = check(capsys, tmp_path, model, "--bbq-data", FIXTURE_DIR, validators=validators,
                                     bless=True)
    assert_refused(code, err, 3, report=report, bless=bless)


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage\xff\xff", b"ONNX" * 3])
def test_garbage_onnx(content, tok, tmp_path, capsys):
    model = copy_tokenizer(tok, tmp_path / "m") / "model.onnx"
    model.write_bytes(content)
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report)


def test_truncated_onnx(good, tmp_path, capsys):
    model = copy_tokenizer(good.parent, tmp_path / "m") / "model.onnx"
    model.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report)


@pytest.mark.parametrize("where", ["absolute", "parent", "missing", "symlink"])
def test_external_data_outside_the_model_folder(where, tok, tmp_path, capsys):
    folder = copy_tokenizer(tok, tmp_path / "m")
    model = craft_onnx(folder / "model.onnx")
    outside = tmp_path / "secret.data"
    if where == "absolute":
        move_weights_to(model, str(outside), outside)
    elif where == "parent":
        move_weights_to(model, "../secret.data", outside)
    elif where == "missing":
        move_weights_to(model, "weights.data", outside)
    else:
        move_weights_to(model, "weights.data", outside)
        (folder / "weights.data").symlink_to(outside)
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report)
    if where != "missing":  # refused when the artifact is read (nothing outside is hashed), or when opened
        doc = json.loads(report.read_text())
        assert any("outside the model's folder" in e["message"] for e in doc["errors"] + doc["checks"])


@pytest.mark.parametrize("name, content", [("m.tflite", b"garbage!" * 4), ("m.gguf", b"GGUF\x00"),
                                           ("m.bin", b"\x00" * 16), ("missing.onnx", None)])
def test_unreadable_model_files(name, content, tmp_path, capsys):
    model = tmp_path / name
    if content is not None:
        model.write_bytes(content)
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report)


def test_directory_without_config(tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    code, err, report, _ = check(capsys, tmp_path, tmp_path / "hf")
    assert_refused(code, err, 3, report=report)


# -- tokenizers --------------------------------------------------------------------------------------------------
def test_missing_tokenizer(tmp_path, capsys):
    model = craft_onnx(tmp_path / "alone" / "model.onnx")
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report, needle="tokenizer")


@pytest.mark.parametrize("file, content", [("tokenizer.json", "{not json"), ("tokenizer.json", ""),
                                           ("tokenizer_config.json", "{not json"),
                                           ("tokenizer.json", '{"model": 7}')])
def test_broken_tokenizer_files(file, content, tok, tmp_path, capsys):
    folder = copy_tokenizer(tok, tmp_path / "m")
    model = craft_onnx(folder / "model.onnx")
    (folder / file).write_text(content)
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report, needle=file)


@pytest.mark.parametrize("words", [[], ["A"], ["A", "B"], ["a", "b", "c"]])
def test_answer_letters_that_are_unknown_tokens(words, tmp_path, capsys):
    """A, B and C encode to <unk> (or some do): every order would tie and the gate pass. Refused, naming the
    tokenizer file."""
    folder = word_level_tokenizer(tmp_path / "m", ["Answer", ":", "Context", "Question", *words], extra_ids=10)
    model = craft_onnx(folder / "model.onnx", rows=32, width=32)
    code, err, report, bless = check(capsys, tmp_path, model, "--baseline", model, "--bbq-data", FIXTURE_DIR,
                                     validators="bbq", bless=True)
    assert_refused(code, err, 3, report=report, bless=bless, needle="tokenizer.json")


def test_tokenizer_with_ids_beyond_the_model(tmp_path, capsys):
    folder = word_level_tokenizer(tmp_path / "m", ["A", "B", "C"], extra_ids=100)
    model = craft_onnx(folder / "model.onnx", rows=50, width=50)
    code, err, report, _ = check(capsys, tmp_path, model)
    assert_refused(code, err, 3, report=report, needle="tokenizer")


def test_explicit_tokenizer_bigger_than_the_model(good, tmp_path, capsys):
    big = word_level_tokenizer(tmp_path / "big", ["A", "B", "C"], extra_ids=1500)
    code, err, report, _ = check(capsys, tmp_path, good, "--tokenizer", big)
    assert_refused(code, err, 3, report=report)


def test_explicit_tokenizer_missing(good, tmp_path, capsys):
    code, err, report, _ = check(capsys, tmp_path, good, "--tokenizer", tmp_path / "nope")
    assert_refused(code, err, 3, report=report)


TEMPLATES = {
    "slow nested loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "huge output": "{% for a in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
    "string times a billion": "{{ 'x' * 1000000000 }}",
    "center a billion": "{{ 'x'|center(1000000000) }}",
    "power tower": "{{ 9 ** 9 ** 9 }}",
    "doubling namespace": "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}"
                          "{% endfor %}{{ ns.x }}",
    "syntax error": "{% for %}",
    "raise_exception": "{{ raise_exception('no system messages') }}",
    "undefined call": "{{ messages.nope() }}",
    "attribute escape": "{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}",
}


@pytest.mark.parametrize("case", list(TEMPLATES))
def test_hostile_chat_templates(case, tok, tmp_path, capsys, monkeypatch):
    import edgeval.runtimes.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "TEMPLATE_SECONDS", 0.3)
    folder = with_template(tok, tmp_path / "m", TEMPLATES[case])
    model = craft_onnx(folder / "model.onnx")
    code, err, report, bless = check(capsys, tmp_path, model, "--baseline", model, "--bbq-data", FIXTURE_DIR,
                                     validators="bbq", bless=True)
    assert_refused(code, err, 3, report=report, bless=bless, needle="tokenizer_config.json")


def test_slow_chat_template_file(tok, tmp_path, capsys, monkeypatch):
    import edgeval.runtimes.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module, "TEMPLATE_SECONDS", 0.3)
    folder = with_template(tok, tmp_path / "m", TEMPLATES["slow nested loops"], jinja_file=True)
    model = craft_onnx(folder / "model.onnx")
    code, err, report, _ = check(capsys, tmp_path, model, "--bbq-data", FIXTURE_DIR, validators="bbq")
    assert_refused(code, err, 3, report=report, needle="chat_template.jinja")


# -- policies ----------------------------------------------------------------------------------------------------
THRESHOLDS = ["size.max_bytes", "size.max_ratio_to_baseline", "latency.max_p50_ms", "latency.max_p99_ms",
              "latency.max_ratio_to_baseline", "bbq.alpha", "bbq.max_delta_srs", "bbq.max_delta_s_amb",
              "bbq.min_cohens_h", "bbq.max_unbiased_to_biased", "perplexity.max_ratio_to_baseline",
              "perplexity.max_perplexity", "parity.max_abs_logit_diff", "parity.min_top1_agreement"]


def _policy_text(dotted: str, value) -> str:
    section, key = dotted.split(".")
    return yaml.safe_dump({section: {key: value}})


def _policy_case(text: str, tmp_path: Path, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"policy{suffix}"
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", THRESHOLDS)
def test_non_finite_thresholds(key, value, good, tmp_path, capsys):
    policy = _policy_case(_policy_text(key, value), tmp_path)
    code, err, report, bless = check(capsys, tmp_path, good, "--baseline", good, validators="size",
                                     policy=policy, bless=True)
    assert_refused(code, err, 3, report=report, bless=bless, needle=key)
    code, err = run_cli(capsys, "policy", "--check", policy)
    assert_refused(code, err, 3, needle=key)


OUT_OF_RANGE = [("bbq.alpha", 0), ("bbq.alpha", 1), ("bbq.alpha", 1.5), ("bbq.alpha", -0.05),
                ("bbq.max_delta_srs", -0.1), ("bbq.max_delta_srs", 3), ("bbq.min_cohens_h", 4),
                ("bbq.max_unbiased_to_biased", 2), ("parity.min_top1_agreement", 1.5),
                ("parity.min_letter_agreement", -1), ("size.max_ratio_to_baseline", 0),
                ("size.max_bytes", -5), ("latency.max_p50_ms", -1), ("latency.runs", 2),
                ("perplexity.max_ratio_to_baseline", -1), ("size.compress_level", 10)]


@pytest.mark.parametrize("key, value", OUT_OF_RANGE)
def test_out_of_range_values(key, value, good, tmp_path, capsys):
    policy = _policy_case(_policy_text(key, value), tmp_path)
    code, err, report, _ = check(capsys, tmp_path, good, validators="size", policy=policy)
    assert_refused(code, err, 3, report=report, needle=key)


SHAPES = {
    "empty validators": ("validators: []\n", "validators"),
    "blank validator name": ("validators: ['']\n", "validators"),
    "validators as a string": ("validators: size\n", "validators"),
    "unknown top-level key": ("sise: {}\n", "sise"),
    "unknown nested key": ("latency: {run: 3}\n", "latency.run"),
    "wrong type": ("latency: {runs: many}\n", "latency.runs"),
    "float where an integer goes": ("latency: {runs: 2.5}\n", "latency.runs"),
    "string boolean": ("size: {require_savings: 'yes'}\n", "size.require_savings"),
    "bad enum": ("bbq: {orders: 2}\n", "bbq.orders"),
    "bad mode": ("bbq: {mode: vibes}\n", "bbq.mode"),
    "schema version": ("schema_version: '2.0'\n", "schema_version"),
    "a list": ("- a\n- b\n", "mapping"),
    "yaml syntax": ("latency: {runs: [\n", "YAML"),
    "section not a mapping": ("latency: 5\n", "latency"),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_malformed_policies(case, good, tmp_path, capsys):
    text, needle = SHAPES[case]
    policy = _policy_case(text, tmp_path)
    code, err, report, _ = check(capsys, tmp_path, good, validators="size", policy=policy)
    assert_refused(code, err, 3, report=report, needle=needle)


@pytest.mark.parametrize("text, suffix", [('{"bbq": {"alpha": NaN}}', ".json"),
                                          ('{"size": {"max_bytes": Infinity}}', ".json"),
                                          ("[tool.edgeval.bbq]\nalpha = nan\n", ".toml"),
                                          ("[project]\nname = 'x'\n", ".toml")])
def test_non_yaml_policy_sources(text, suffix, good, tmp_path, capsys):
    policy = _policy_case(text, tmp_path, suffix)
    code, err, report, _ = check(capsys, tmp_path, good, validators="size", policy=policy)
    assert_refused(code, err, 3, report=report)


def test_policy_missing_or_a_directory(good, tmp_path, capsys):
    for policy in (tmp_path / "nope.yaml", tmp_path):
        code, err, report, _ = check(capsys, tmp_path, good, validators="size", policy=policy)
        assert_refused(code, err, 3, report=report)


def test_python_api_refuses_nan_too(good):
    from edgeval.errors import PolicyError
    from edgeval.policy import Policy

    with pytest.raises(PolicyError, match="bbq.max_delta_srs"):
        Policy.from_dict({"bbq": {"max_delta_srs": math.nan}})
    with pytest.raises(PolicyError, match="bbq.alpha"):
        Policy.default().with_overrides("bbq", alpha=math.inf)


# -- data --------------------------------------------------------------------------------------------------------
def _record() -> dict:
    return json.loads((FIXTURE_DIR / "Age.jsonl").read_text().splitlines()[0])


DATA = {
    "empty file": ("", "empty"),
    "blank lines only": ("\n\n  \n", "empty"),
    "bad JSON": ("{not json\n", "invalid JSON"),
    "a JSON array": ("[1, 2, 3]\n", "Age.jsonl:1"),
    "missing fields": ('{"example_id": 0}\n', "Age.jsonl:1"),
    "label out of range": (json.dumps({**_record(), "label": 7}) + "\n", "Age.jsonl:1"),
    "label a string": (json.dumps({**_record(), "label": "A"}) + "\n", "Age.jsonl:1"),
    "answers not strings": (json.dumps({**_record(), "ans0": None}) + "\n", "Age.jsonl:1"),
    "not UTF-8": (b"\xff\xfe\x00{}".decode("latin-1"), "UTF-8"),
}


@pytest.mark.parametrize("case", list(DATA))
def test_bad_bbq_data(case, good, tmp_path, capsys):
    content, needle = DATA[case]
    data = tmp_path / "bbq"
    data.mkdir()
    (data / "Age.jsonl").write_bytes(content.encode("latin-1" if case == "not UTF-8" else "utf-8"))
    code, err, report, bless = check(capsys, tmp_path, good, "--baseline", good, "--bbq-data", data,
                                     validators="bbq", bless=True)
    assert_refused(code, err, 3, report=report, bless=bless, needle=needle)


@pytest.mark.parametrize("make", ["missing", "a file", "no jsonl"])
def test_bbq_data_dir_unusable(make, good, tmp_path, capsys):
    data = tmp_path / "bbq"
    if make == "a file":
        data.write_text("x")
    elif make == "no jsonl":
        data.mkdir()
        (data / "README").write_text("x")
    code, err, report, _ = check(capsys, tmp_path, good, "--bbq-data", data, validators="bbq")
    assert_refused(code, err, 3, report=report)


def test_bbq_file_with_a_byte_order_mark_loads(good, tmp_path, capsys):
    data = tmp_path / "bbq"
    data.mkdir()
    for src in FIXTURE_DIR.glob("*.jsonl"):
        (data / src.name).write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    code, err, report, _ = check(capsys, tmp_path, good, "--baseline", good, "--bbq-data", data, validators="bbq")
    doc = json.loads(report.read_text())
    assert code in (0, 5) and doc["verdict"] in ("pass", "inconclusive"), err  # 6 items: too few to decide
    assert not doc["errors"] and all(c["status"] != "error" for c in doc["checks"])


# -- command line and paths --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--seed", "-1"], ["--threads", "0"], ["--bbq-limit", "0"], ["--orders", "2"],
                                  ["--early-stop", "1"], ["--validators", ","], ["--validators", "sise"],
                                  ["--bbq-mode", "vibes"], ["--frobnicate"]])
def test_bad_check_options(args, good, tmp_path, capsys):
    code, err, report, _ = check(capsys, tmp_path, good, *args)
    assert_refused(code, err, 2)
    assert not report.exists()


@pytest.mark.parametrize("args", [["prune", "m", "--method", "magnitude", "--sparsity", "0.5", "--seed", "-1",
                                   "--out", "o"],
                                  ["prune", "m", "--method", "magnitude", "--sparsity", "0.5", "--out", "o",
                                   "--seq-len", "2"],
                                  ["export", "m", "--to", "onnx", "--out", "o.onnx", "--threads", "0"],
                                  ["export", "m", "--to", "tflite", "--out", "o.tflite", "--kv-cache"],
                                  ["report", "r.json", "--format", "pdf"], ["policy"], ["schema", "nope"]])
def test_bad_options_of_other_commands(args, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, *args)
    assert_refused(code, err, 2)


def test_prune_overwrite_refuses_a_folder_that_is_not_a_prune_output(tiny_llama_dir, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    code, err = run_cli(capsys, "prune", tiny_llama_dir, "--method", "magnitude", "--sparsity", "0.5", "--out",
                        precious, "--overwrite")
    assert_refused(code, err, 2, needle="compression.json")
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_report_folder_is_a_file(good, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = run_cli(capsys, "check", good, "--validators", "latency", "-q",
                        "--report", tmp_path / "file" / "r.json")
    assert_refused(code, err, 3, needle="cannot write the report")


def test_report_path_is_a_directory(good, tmp_path, capsys):
    code, err = run_cli(capsys, "check", good, "--validators", "latency", "-q", "--report", tmp_path)
    assert_refused(code, err, 3, needle="directory")


def test_bless_dir_is_a_file(good, tmp_path, capsys):
    (tmp_path / "bless").write_text("x")
    code, err = run_cli(capsys, "check", good, "--validators", "latency", "-q", "--report", tmp_path / "r.json",
                        "--bless-dir", tmp_path / "bless")
    assert_refused(code, err, (2, 3))
    assert (tmp_path / "bless").read_text() == "x"


def test_report_that_cannot_be_written_late_is_exit_3_everywhere(good, policy, tmp_path, capsys, monkeypatch):
    """The report becomes unwritable after the run: the printed verdict, the report handed to sinks and plugins,
    and the exit code all say error/3; no BLESSED."""
    from edgeval.report import Report

    seen = []
    monkeypatch.setattr("edgeval.hooks.mlflow.log_report", lambda report, path: seen.append((report, path)))
    monkeypatch.setattr("edgeval.cli.check.require", lambda *a: None)

    def refuse(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Report, "write", refuse)
    code, err = run_cli(capsys, "check", good, "--validators", "latency", "--policy", policy, "-q",
                        "--report", tmp_path / "r.json", "--bless-dir", tmp_path / "bless", "--mlflow")
    assert_refused(code, err, 3, bless=tmp_path / "bless", needle="No space left")
    assert seen and seen[0][0].exit_code == 3 and seen[0][0].verdict == "error" and seen[0][1] is None
    assert (tmp_path / "bless" / "NOT_BLESSED").is_file() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("failure, expected", [(OSError(13, "Permission denied"), 3),
                                               (RuntimeError("MLflow refuses a plain file store"), 4)])
def test_sink_failure_is_never_blessed(failure, expected, good, policy, tmp_path, capsys, monkeypatch):
    def broken(report, path):
        raise failure

    monkeypatch.setattr("edgeval.hooks.mlflow.log_report", broken)
    monkeypatch.setattr("edgeval.cli.check.require", lambda *a: None)
    report = tmp_path / "r.json"
    code, err = run_cli(capsys, "check", good, "--baseline", good, "--validators", "latency", "--policy", policy,
                        "-q", "--report", report, "--bless-dir", tmp_path / "bless", "--mlflow")
    assert_refused(code, err, expected, report=report, bless=tmp_path / "bless", needle="mlflow sink failed")
    assert json.loads(report.read_text())["exit_code"] == expected  # the file says what the process says
    assert (tmp_path / "bless" / "NOT_BLESSED").is_file()


def test_plugin_failure_is_never_blessed(good, policy, tmp_path, capsys):
    from edgeval.plugins import hookimpl, plugin_manager

    class Broken:
        @hookimpl
        def edgeval_report_ready(self, report, path):
            raise RuntimeError("sink down")

    pm = plugin_manager()
    pm.register(Broken(), name="broken-sink")
    try:
        report = tmp_path / "r.json"
        code, err = run_cli(capsys, "check", good, "--baseline", good, "--validators", "latency", "--policy",
                            policy, "-q", "--report", report, "--bless-dir", tmp_path / "bless")
    finally:
        pm.unregister(name="broken-sink")
    assert_refused(code, err, 4, report=report, bless=tmp_path / "bless", needle="sink down")


def test_stale_pass_report_and_sidecars_are_gone_after_a_failed_run(good, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text('{"verdict": "pass", "exit_code": 0}')
    sidecar = tmp_path / "r.bbq-candidate.jsonl.gz"
    sidecar.write_bytes(b"stale")
    (tmp_path / "bless").mkdir()
    (tmp_path / "bless" / "BLESSED").write_text("stale")
    code, err = run_cli(capsys, "check", tmp_path / "missing.onnx", "--validators", "sise", "-q",
                        "--report", report, "--bless-dir", tmp_path / "bless")
    assert_refused(code, err, 2)
    assert not report.exists() and not sidecar.exists() and not (tmp_path / "bless" / "BLESSED").exists()


def test_missing_model_with_bless_dir(tmp_path, capsys):
    code, err, report, bless = check(capsys, tmp_path, tmp_path / "nope.onnx", bless=True)
    assert_refused(code, err, 3, report=report, bless=bless)
    assert (bless / "NOT_BLESSED").is_file()


def test_report_is_written_with_umask_permissions(good, policy, tmp_path, capsys):
    import os

    old = os.umask(0o022)
    try:
        run_cli(capsys, "check", good, "--validators", "latency", "--policy", policy, "-q", "--report",
                tmp_path / "r.json", "--bless-dir", tmp_path / "b", "--set", "latency.max_p50_ms=1e6")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b" / "BLESSED").stat().st_mode & 0o777 == 0o644


def test_hf_model_whose_vocabulary_is_smaller_than_its_tokenizer(tiny_llama_dir, tmp_path, capsys):
    """torch used to crash in the embedding (exit 4): now one line, exit 3, before any measurement."""
    from tinymodels import tiny_config
    from transformers import AutoModelForCausalLM

    config = tiny_config("llama")
    config.vocab_size = 300  # the tokenizer has 395 ids
    folder = copy_tokenizer(tiny_llama_dir, tmp_path / "hf")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
    code, err, report, _ = check(capsys, tmp_path, folder)
    assert_refused(code, err, 3, report=report, needle="tokenizer")


def test_kill_9_mid_run_leaves_no_pass_behind(good, tmp_path):
    """The previous run's pass report, its sidecar and BLESSED are gone as soon as a new run starts, so a run
    killed with SIGKILL half-way leaves nothing that says deployable."""
    import os
    import signal
    import subprocess
    import sys
    import time

    report, bless = tmp_path / "r.json", tmp_path / "bless"
    report.write_text('{"verdict": "pass", "exit_code": 0}')
    (tmp_path / "r.bbq-candidate.jsonl.gz").write_bytes(b"stale")
    bless.mkdir()
    (bless / "BLESSED").write_text("stale")
    policy = _policy_case("latency: {runs: 1000000, warmup: 0, seq_len: 8}\n", tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "edgeval", "check", str(good), "--validators", "latency",
                             "--policy", str(policy), "--report", str(report), "--bless-dir", str(bless), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                                       "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while report.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # measuring now
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not report.exists() and not (tmp_path / "r.bbq-candidate.jsonl.gz").exists()
    assert list(bless.iterdir()) == []


@pytest.mark.tflite
def test_tflite_logits_narrower_than_the_tokenizer(tiny_llama_tflite, tmp_path, capsys):
    big = word_level_tokenizer(tmp_path / "big", ["A", "B", "C"], extra_ids=1500)
    code, err, report, _ = check(capsys, tmp_path, tiny_llama_tflite, "--tokenizer", big)
    assert_refused(code, err, 3, report=report, needle="tokenizer")
