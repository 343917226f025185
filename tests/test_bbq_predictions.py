"""Saved BBQ predictions (--baseline-predictions): trusted only when they are the baseline's, made on this data
with these scoring settings, and well-formed. Every refusal is exit 3 with one line naming the file and what is
wrong, no traceback, and never a written pass."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURE  # noqa: E402

from edgeval.cli import main
from edgeval.errors import DataError
from edgeval.schemas import load_schema
from edgeval.validators.bbq import predictions as preds_mod
from edgeval.validators.bbq import records
from edgeval.validators.bbq.types import Prediction

POLICY = "bbq: {limit: 32, bootstrap: 100}\n"


def run(tmp_path: Path, *args, capsys=None) -> tuple[int, dict, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    report = tmp_path / "out" / "r.json"
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in (*args, "--validators", "bbq", "--policy", policy, "--bbq-data", FIXTURE,
                               "--report", report, "--bless-dir", tmp_path / "bless", "-q")])
    err = capsys.readouterr().err if capsys else ""
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, load_schema("report"))
    return info.value.code, doc, err


@pytest.fixture(scope="module")
def sidecars(tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path_factory) -> dict:
    """One check of the pruned model against the dense one: its two sidecars and the report."""
    tmp = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEVAL_CACHE_DIR", str(tmp / "cache"))
        code, doc, _ = run(tmp, "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx)
    assert code in (0, 1, 5)
    bbq = doc["results"]["bbq"]
    return {"baseline": Path(bbq["baseline_predictions"]["path"]),
            "candidate": Path(bbq["candidate_predictions"]["path"]),
            "doc": doc}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path / "cache"))


def _read(path: Path) -> tuple[dict, list[dict], list[str]]:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]], lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    return path


def _header(fn):
    def mutate(header, records, lines, ctx):
        fn(header, ctx)
        return [json.dumps(header), *lines[1:]]
    return mutate


def _records(fn):
    def mutate(header, records, lines, ctx):
        fn(records)
        return [lines[0], *(json.dumps(r) for r in records)]
    return mutate


def _raw(fn):
    return lambda header, records, lines, ctx: fn(list(lines))


def _set(key, value):
    return lambda h, ctx: h.__setitem__(key, value(ctx) if callable(value) else value)


def _first(key, value):
    return lambda rs: rs[0].__setitem__(key, value)


def _other_label(rs):
    rs[0]["label"] = (rs[0]["label"] + 1) % 3


def _other_biased(rs):
    rs[0]["biased_idx"] = next(i for i in range(3) if i != rs[0]["biased_idx"])


def _swap_answer(rs):
    rs[0]["pred"] = 0 if rs[0]["pred"] != 0 else 1


def _flip_condition(rs):
    rs[0]["context_condition"] = {"ambig": "disambig", "disambig": "ambig"}[rs[0]["context_condition"]]


def _dup_key(lines):
    lines[1] = lines[1][:-1] + ',"pred":0}'
    return lines


CASES = {
    "role candidate": (_header(_set("role", "candidate")), "role is 'candidate'"),
    "candidate's own sha": (_header(_set("model_sha256", lambda c: c["candidate_sha"])), "candidate's own"),
    "zeros sha": (_header(_set("model_sha256", "0" * 64)), "all zeros"),
    "short sha": (_header(_set("model_sha256", "abc123")), "model_sha256"),
    "upper-case sha": (_header(_set("model_sha256", lambda c: c["baseline_sha"].upper())), "model_sha256"),
    "missing sha": (_header(lambda h, c: h.pop("model_sha256")), "model_sha256"),
    "data fingerprint": (_header(_set("data_fingerprint", "1" * 64)), "data_fingerprint="),
    "no data fingerprint": (_header(lambda h, c: h.pop("data_fingerprint")), "data_fingerprint"),
    "sample fingerprint": (_header(_set("sample_fingerprint", "2" * 64)), "sample_fingerprint="),
    "prompt version": (_header(_set("prompt_version", "bbq-letter-v1")), "prompt_version="),
    "orders": (_header(_set("orders", 1)), "orders=1"),
    "orders as float": (_header(_set("orders", 3.0)), "orders"),
    "mode": (_header(_set("mode", "loglik")), "mode="),
    "unknown scoring key": (_header(_set("future_knob", 0.001)), "unknown header field future_knob"),
    "tie epsilon": (_header(_set("tie_epsilon", 0.001)), "tie_epsilon=0.001"),
    "no tie epsilon": (_header(lambda h, c: h.pop("tie_epsilon")), "tie_epsilon is missing"),
    "nested header value": (_header(_set("note", {"a": 1})), "note"),
    "wrong format": (_header(_set("format", "something-else")), "not an edgeval BBQ predictions file"),
    "old version": (_header(_set("version", 1)), "format version 1"),
    "pred letter": (_records(_first("pred", "B")), ":2: pred"),
    "pred 7": (_records(_first("pred", 7)), ":2: pred"),
    "pred -1": (_records(_first("pred", -1)), ":2: pred"),
    "pred bool": (_records(_first("pred", True)), ":2: pred"),
    "label bool": (_records(_first("label", False)), ":2: label"),
    "example_id string": (_records(_first("example_id", "0")), ":2: example_id"),
    "example_id float": (_records(_first("example_id", 0.5)), ":2: example_id"),
    "pred 2.0": (_records(_first("pred", 2.0)), ":2: pred: 2.0 is not 0, 1, 2 or null"),
    "label 1.0": (_records(_first("label", 1.0)), ":2: label: 1.0 is not 0, 1 or 2"),
    "category number": (_records(_first("category", 5)), ":2: category"),
    "score string": (_records(_first("scores", ["x", 0.0, 0.0])), ":2: scores.0"),
    "four scores": (_records(_first("scores", [0.0, 0.0, 0.0, 0.0])), ":2: scores"),
    "two scores": (_records(_first("scores", [0.0, 0.0])), ":2: expected 3 scores"),
    "order letter 5": (_records(_first("order_letters", [5, 0, 0])), ":2: order_letters.0"),
    "order letters bool": (_records(_first("order_letters", [True, 0, 0])), ":2: order_letters.0"),
    "too few order letters": (_records(_first("order_letters", [0])), "order letters"),
    "extra field": (_records(_first("foo", 1)), ":2: record"),
    "extra in extra": (_records(lambda rs: rs[0]["extra"].__setitem__("x", 1)), ":2: extra"),
    "missing field": (_records(lambda rs: rs[0].pop("margin")), ":2: record"),
    "missing item": (_records(lambda rs: rs.pop()), "lack 1 of the 32"),
    "foreign item": (_records(lambda rs: rs.append(dict(rs[0], example_id=9999))), "not in this run's sample"),
    "duplicate record": (_records(lambda rs: rs.append(dict(rs[0]))), "duplicate record"),
    "label differs": (_records(_other_label), "label="),
    "biased_idx differs": (_records(_other_biased), "biased_idx="),
    "template differs": (_records(_first("question_index", "99")), ":2: question_index='99'"),
    "template a number": (_records(_first("question_index", 1)), ":2: question_index"),
    "pred not from scores": (_records(_swap_answer), ":2: pred="),
    "tie flag on an answer": (_records(lambda rs: rs[0]["extra"].__setitem__("tie", True)), ":2: pred="),
    "context differs": (_records(_flip_condition), ":2: context_condition="),
    "NaN score": (_raw(lambda ls: [ls[0], ls[1].replace('"scores":[', '"scores":[NaN,', 1), *ls[2:]]),
                  ":2: invalid JSON"),
    "duplicate JSON key": (_raw(_dup_key), ":2: invalid JSON: duplicate key 'pred'"),
    "bad JSON": (_raw(lambda ls: [ls[0], ls[1][:-3], *ls[2:]]), ":2: invalid JSON"),
    "header is a list": (_raw(lambda ls: ["[1, 2]", *ls[1:]]), ":1: expected a JSON object"),
    "record is a number": (_raw(lambda ls: [ls[0], "7", *ls[2:]]), ":2: expected a JSON object"),
    "no lines": (_raw(lambda ls: []), "empty predictions file"),
    "rows not log-probabilities": (_records(lambda rs: rs[0]["extra"].__setitem__("order_logprobs", [[0.0] * 3] * 3)),
                                   ":2: rows [[0.0, 0.0, 0.0]"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_saved_baseline_is_refused(case, sidecars, tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path, capsys):
    mutate, expected = CASES[case]
    header, records, lines = _read(sidecars["baseline"])
    ctx = {"candidate_sha": sidecars["doc"]["candidate"]["sha256"], "baseline_sha": header["model_sha256"]}
    bad = _write(tmp_path / "bad.jsonl.gz", mutate(header, records, lines, ctx))
    _assert_refused(tmp_path, capsys, expected, bad, "check", tiny_llama_pruned_onnx, "--baseline-predictions", bad)


def _assert_refused(tmp_path, capsys, expected, bad, *args):
    code, doc, err = run(tmp_path, *args, capsys=capsys)
    message = doc["checks"][0]["message"]
    assert code == 3 and doc["verdict"] == "error" and doc["exit_code"] == 3, message
    assert expected in message and str(bad) in message and "\n" not in message, message
    assert "Traceback" not in err
    assert not (tmp_path / "bless" / "BLESSED").exists()
    assert all(c["status"] != "pass" for c in doc["checks"])


@pytest.mark.parametrize("case, content", [
    ("torn gzip", lambda raw: raw[: len(raw) // 2]),
    ("not gzip", lambda raw: b'{"format": "edgeval-bbq-predictions"}\n'),
    ("gzip of binary", lambda raw: gzip.compress(b"\xff\xfe\x00garbage")),
    ("empty file", lambda raw: b""),
])
def test_unreadable_sidecar_is_refused(case, content, sidecars, tiny_llama_pruned_onnx, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(content(sidecars["baseline"].read_bytes()))
    expected = {"torn gzip": "truncated", "not gzip": "not a complete gzip", "gzip of binary": "not UTF-8",
                "empty file": "empty predictions file"}[case]
    _assert_refused(tmp_path, capsys, expected, bad, "check", tiny_llama_pruned_onnx, "--baseline-predictions", bad)


def test_missing_sidecar_is_refused(tiny_llama_pruned_onnx, tmp_path, capsys):
    """A declared input that is not there is refused before anything runs: one input error, no check."""
    bad = tmp_path / "nowhere.jsonl.gz"
    code, doc, err = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline-predictions", bad, capsys=capsys)
    assert code == 3 and doc["verdict"] == "error" and doc["checks"] == []
    [error] = doc["errors"]
    assert error["source"] == "inputs" and "not found" in error["message"] and str(bad) in error["message"]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "bless" / "BLESSED").exists()


def test_the_candidates_own_sidecar_cannot_pass_as_the_baseline(sidecars, tiny_llama_pruned_onnx, tmp_path, capsys):
    """The issue's attack: the candidate's sidecar as it is, and relabelled as a baseline's."""
    own = sidecars["candidate"]
    _assert_refused(tmp_path, capsys, "role is 'candidate'", own,
                    "check", tiny_llama_pruned_onnx, "--baseline-predictions", own)
    header, _, lines = _read(own)
    header["role"] = "baseline"
    relabelled = _write(tmp_path / "relabelled.jsonl.gz", [json.dumps(header), *lines[1:]])
    _assert_refused(tmp_path, capsys, "candidate's own", relabelled,
                    "check", tiny_llama_pruned_onnx, "--baseline-predictions", relabelled)


def test_a_dense_models_own_run_serves_as_baseline_only_with_that_model_named(tiny_llama_onnx, tiny_llama_pruned_onnx,
                                                                              tmp_path, capsys):
    """The demo's way: check the dense model alone, then use its (candidate-role) sidecar with --baseline dense."""
    (tmp_path / "dense").mkdir()
    code, dense, _ = run(tmp_path / "dense", "check", tiny_llama_onnx)
    saved = Path(dense["results"]["bbq"]["candidate_predictions"]["path"])
    assert code in (0, 1, 5) and _read(saved)[0]["role"] == "candidate"
    code, doc, _ = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx,
                       "--baseline-predictions", saved)
    made_by = doc["results"]["bbq"]["baseline_predictions"]["model_sha256"]
    assert code in (0, 1, 5) and made_by == dense["candidate"]["sha256"]
    _assert_refused(tmp_path, capsys, "role is 'candidate'", saved,
                    "check", tiny_llama_pruned_onnx, "--baseline-predictions", saved)


def test_sidecar_of_another_model_than_the_baseline_given(sidecars, tiny_llama_pruned_onnx, tmp_path, capsys):
    saved = sidecars["baseline"]
    _assert_refused(tmp_path, capsys, "not the --baseline model's", saved, "check", tiny_llama_pruned_onnx,
                    "--baseline", tiny_llama_pruned_onnx, "--baseline-predictions", saved)


def test_other_orders_on_the_command_line_are_refused(sidecars, tiny_llama_pruned_onnx, tmp_path, capsys):
    saved = sidecars["baseline"]
    _assert_refused(tmp_path, capsys, "orders=3", saved, "check", tiny_llama_pruned_onnx,
                    "--baseline-predictions", saved, "--orders", "1")


def test_a_good_saved_baseline_is_used_and_recorded(sidecars, tiny_llama_pruned_onnx, tmp_path):
    saved = sidecars["baseline"]
    first = sidecars["doc"]
    code, doc, _ = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline-predictions", saved)
    assert code == first["exit_code"] and doc["verdict"] == first["verdict"]
    bbq = doc["results"]["bbq"]
    record = bbq["baseline_predictions"]
    assert record["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest() and record["path"] == str(saved)
    assert record["model_sha256"] == first["baseline"]["sha256"] and record["runtime"] == "onnxruntime"
    assert bbq["baseline"] == first["results"]["bbq"]["baseline"]
    # no --baseline model: the report names the sidecar's model, and says where that came from
    assert doc["baseline"]["sha256"] == first["baseline"]["sha256"]
    assert doc["baseline"]["path"] == first["baseline"]["path"] and str(saved) in doc["baseline"]["source"]
    assert record["spot_check"]["items"] == 0 and "trusted as given" in record["spot_check"]["reason"]


def test_saved_baseline_with_the_same_baseline_model_given(sidecars, tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path):
    code, doc, _ = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx,
                       "--baseline-predictions", sidecars["baseline"])
    assert code == sidecars["doc"]["exit_code"] and "source" not in doc["baseline"]
    record = doc["results"]["bbq"]["baseline_predictions"]
    assert record["source"] == "saved"
    # with the model there, a random few items are re-scored on it: the file's own rows, within float noise
    spot = record["spot_check"]
    assert spot["items"] == 32 and len({tuple(k) for k in spot["keys"]}) == 32 and spot["max_abs_diff"] < 1e-4  # all 32
    assert spot["runtime"] == spot["saved_runtime"] == "onnxruntime"


def test_a_consistent_file_of_another_models_rows_fails_the_spot_check(sidecars, tiny_llama_pruned_onnx,
                                                                       tiny_llama_onnx, tmp_path, capsys):
    """A forgery that every consistency check accepts: the candidate's own predictions (scores that follow from
    their rows, the same items and settings) under the dense model's identity. Re-scoring a few items on the
    dense model shows they are not its measurements (on these tiny models the rows differ by ~0.05)."""
    header, _, lines = _read(sidecars["candidate"])
    header.update(role="baseline", model_sha256=sidecars["doc"]["baseline"]["sha256"])
    forged = _write(tmp_path / "forged.jsonl.gz", [json.dumps(header), *lines[1:]])
    _assert_refused(tmp_path, capsys, "are not the baseline model's: re-scored on onnxruntime", forged,
                    "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx, "--baseline-predictions", forged)


def test_sidecar_header_carries_identity_and_every_scoring_key(sidecars):
    doc = sidecars["doc"]
    header, records, _ = _read(sidecars["baseline"])
    scoring = {k: v for k, v in doc["results"]["bbq"]["scoring"].items() if k != "prompt"}  # per-model prompt info
    assert {k: header[k] for k in scoring} == scoring and "data_fingerprint" in scoring
    assert header["role"] == "baseline" and header["model_sha256"] == doc["baseline"]["sha256"]
    assert header["model_format"] == "onnx" and header["model_bytes"] == doc["baseline"]["bytes"]
    validator = jsonschema.Draft202012Validator(load_schema("bbq-predictions"))
    for line in (header, *records):
        validator.validate(line)


def test_check_baseline_compares_every_scoring_key_generically(sidecars):
    """A scoring key added later is compared without a code change here."""
    header, preds, _ = preds_mod.read_sidecar(sidecars["baseline"])
    scoring = {k: v for k, v in header.items() if k not in preds_mod.IDENTITY_KEYS}
    items = [_item_of(p) for p in preds]
    args = dict(items=items, baseline_sha256=None, candidate_sha256="f" * 64)
    assert len(preds_mod.check_baseline(Path("b.gz"), header, preds, scoring=scoring, **args)) == len(preds)
    with pytest.raises(DataError, match="future_knob is missing"):
        preds_mod.check_baseline(Path("b.gz"), header, preds, scoring={**scoring, "future_knob": 1e-9}, **args)
    with pytest.raises(DataError, match="future_knob=0.1"):
        preds_mod.check_baseline(Path("b.gz"), {**header, "future_knob": 0.1}, preds,
                                 scoring={**scoring, "future_knob": 1e-9}, **args)


def _item_of(p: Prediction):
    from edgeval.validators.bbq.types import BBQItem

    return BBQItem(p.category, p.example_id, p.question_index, p.question_polarity, p.context_condition, "c", "q",
                   ("a", "b", "c"), p.label, p.unknown_idx, p.biased_idx)


def test_record_schema_lists_exactly_the_prediction_fields():
    assert records.check_record_schema_matches_prediction() == set()
    assert {name for name, _, _ in records._FIELD_RULES} == records._RECORD_KEYS  # the fast check too


ODD_VALUES = [None, True, False, 0, 1, 2, 3, -1, 0.5, 2.0, "", "x", "ambig", "disambig", "neg", "nonneg", [],
              [0.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0], [0, 1, 2], [True], ["a"], [1, 5], {}, {"tie": True},
              {"tie": False}, {"x": 1}, {"order_logprobs": [[0.1, 0.2, 0.3]]}, {"order_logprobs": [[0.1, 0.2]]},
              {"order_logprobs": [[0.1, 0.2, True]]}, {"order_logprobs": "no"}]


def _float_for_int(rec: dict) -> bool:
    """An integer field written as 2.0: JSON Schema's "integer" admits it, edgeval's reader does not."""
    ints = [rec.get(k) for k in ("example_id", "label", "unknown_idx", "biased_idx", "pred")]
    ints += rec.get("order_letters") if isinstance(rec.get("order_letters"), list) else []
    return any(type(v) is float for v in ints)


def test_the_fast_record_check_agrees_with_the_json_schema(sidecars):
    """record_ok (plain Python, used on every record) accepts exactly what the schema accepts, except integers
    written with a fraction (2.0), which only it refuses."""
    import random

    schema = jsonschema.Draft202012Validator({"$defs": load_schema("bbq-predictions")["$defs"],
                                              "$ref": "#/$defs/record"})
    _, rows, _ = _read(sidecars["baseline"])
    rng = random.Random(0)
    agreed = {True: 0, False: 0}
    for _ in range(1500):
        rec = json.loads(json.dumps(rng.choice(rows)))
        for _ in range(rng.choice([0, 1, 1, 2])):
            key = rng.choice([*rec, "foo"])
            if rng.random() < 0.1:
                rec.pop(key, None)
            else:
                rec[key] = json.loads(json.dumps(rng.choice(ODD_VALUES)))
        valid = schema.is_valid(rec) and not _float_for_int(rec)
        assert records.record_ok(rec) == valid, rec
        agreed[valid] += 1
    assert min(agreed.values()) > 200  # both outcomes well covered


def test_sidecar_bytes_are_deterministic(sidecars, tmp_path):
    header, preds, _ = preds_mod.read_sidecar(sidecars["baseline"])
    head = {k: v for k, v in header.items() if k not in ("format", "version")}
    a = preds_mod.write_predictions(tmp_path / "a.jsonl.gz", preds, head)
    b = preds_mod.write_predictions(tmp_path / "b.jsonl.gz", preds, head)
    assert a == b == hashlib.sha256(sidecars["baseline"].read_bytes()).hexdigest()


def test_writing_a_bad_header_is_a_bug_not_a_file(tmp_path):
    with pytest.raises(DataError, match="model_sha256"):
        preds_mod.write_predictions(tmp_path / "x.jsonl.gz", [], {"role": "baseline", "model_sha256": "0",
                                    "runtime": "x", "mode": "letter", "orders": 3, "prompt_version": "v",
                                    "sample_fingerprint": "a" * 64, "data_fingerprint": "b" * 64})
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_a_benchmarks_own_cache_of_version_1_stays_readable_but_is_never_a_baseline(sidecars, tmp_path):
    header, records, lines = _read(sidecars["baseline"])
    v1 = {k: header[k] for k in ("format", "mode", "orders", "prompt_version", "sample_fingerprint")}
    old = _write(tmp_path / "bbq-predictions.jsonl.gz", [json.dumps({**v1, "version": 1, "seconds": 1.5}), *lines[1:]])
    cached_header, cached = preds_mod.read_cache(old)
    assert cached_header["seconds"] == 1.5 and cached == preds_mod.read_predictions(sidecars["baseline"])[1]
    with pytest.raises(DataError, match="format version 1"):
        preds_mod.read_predictions(old)
    preds_mod.write_predictions(tmp_path / "new.jsonl.gz", cached, {**v1, "seconds": 2.0}, check_header=False)
    assert preds_mod.read_cache(tmp_path / "new.jsonl.gz")[1] == cached
    with pytest.raises(DataError, match="header: 'role' is a required property"):
        preds_mod.read_predictions(tmp_path / "new.jsonl.gz")


def test_a_record_with_an_infinite_number_is_refused():
    """JSON's 1e999 parses to inf; edgeval never writes one, and a reader that took it would trust inf scores."""
    from edgeval.errors import DataError
    from edgeval.validators.bbq.records import parse_line, record_from_json

    line = ('{"category":"Age","example_id":0,"question_index":"1","context_condition":"ambig",'
            '"question_polarity":"neg","label":2,"unknown_idx":2,"biased_idx":0,"pred":0,"scores":[1e999,0,0],'
            '"margin":1.0,"order_letters":[0],"extra":{}}')
    with pytest.raises(DataError, match="scores"):
        record_from_json(parse_line(line, "t"), "t:2")
    record_from_json(parse_line(line.replace("1e999", "1.5"), "t"), "t:2")      # the same record, finite: fine


def test_a_saved_baseline_at_the_candidates_side_file_path_is_refused_not_overwritten(sidecars,
                                                                                     tiny_llama_pruned_onnx,
                                                                                     tmp_path, capsys):
    """--baseline-predictions out/r.bbq-candidate.jsonl.gz --report out/r.json: the file was read, then replaced by
    this run's candidate predictions (and the report kept the old sha256)."""
    target = tmp_path / "out" / "r.bbq-candidate.jsonl.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(sidecars["baseline"].read_bytes())
    before = target.read_bytes()
    _assert_refused(tmp_path, capsys, "they would be overwritten", target,
                    "check", tiny_llama_pruned_onnx, "--baseline-predictions", target)
    assert target.read_bytes() == before


@pytest.mark.parametrize("flags", [
    ["--input", "bbq.baseline_predictions=a.gz", "--baseline-predictions", "b.gz"],
    ["--input", "bbq.baseline_predictions=a.gz", "--input", "bbq.baseline_predictions=b.gz"]])
def test_two_files_for_one_input_are_a_usage_error(flags, tiny_llama_pruned_onnx, tmp_path, capsys):
    """The last one used to win silently."""
    with pytest.raises(SystemExit) as info:
        main(["check", str(tiny_llama_pruned_onnx), *flags, "--report", str(tmp_path / "r.json"), "-q"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "give one" in err and "a.gz" in err and "b.gz" in err, err
