"""Models edgeval has never seen: BOS exactly once (as transformers adds it), a prompt format for base models,
fingerprints to compare runs, and a weak-signal warning for a model that always answers "A".

The reference everywhere is transformers with its own defaults: ``AutoTokenizer(...)(text)`` (special tokens
added as the tokenizer says) and ``apply_chat_template(..., tokenize=True)``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from bbq_fixture import FIXTURE_DIR  # noqa: E402

from edgeval.cli import main
from edgeval.logprobs import cyclic_orders
from edgeval.runtimes import load_runtime
from edgeval.runtimes.tokenizer import FastTokenizer
from edgeval.validators.bbq import data
from edgeval.validators.bbq.prompts import letter_prompt, prompt_info
from edgeval.validators.bbq.scoring import score_letters
from edgeval.validators.perplexity import load_text, perplexity

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bos_dir(tmp_path_factory) -> Path:
    """A Llama whose tokenizer puts <bos> before every text, with no chat template (a base model)."""
    from tinymodels import save_tiny_model

    return save_tiny_model("llama", tmp_path_factory.mktemp("bos-base"), bos=True, template=None)


@pytest.fixture(scope="module")
def bos_onnx(bos_dir, tmp_path_factory) -> Path:
    from edgeval.converters.export import export_onnx

    return export_onnx(bos_dir, tmp_path_factory.mktemp("bos-onnx") / "model.onnx", legacy=True)


def tokenizers_of(directory: Path):
    from edgeval.runtimes.torch import load_hf_tokenizer

    return FastTokenizer(directory), load_hf_tokenizer(directory)


def reference_logits(directory: Path, ids: list[int]) -> np.ndarray:
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def reference_perplexity(directory: Path, text: str, n: int, add_special_tokens: bool = True) -> float:
    ids = transformers.AutoTokenizer.from_pretrained(directory)(text, add_special_tokens=add_special_tokens)
    ids = ids["input_ids"][:n]
    logits = reference_logits(directory, ids)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(
        1, keepdims=True)
    return math.exp(-float(np.mean([logp[i, ids[i + 1]] for i in range(len(ids) - 1)])))


# -- ids ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [dict(bos=True, template=None), dict(template=None), {}])
def test_text_is_encoded_as_transformers_encodes_it(options, tmp_path):
    from tinymodels import save_tiny_model

    directory = save_tiny_model("llama", tmp_path, **options)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    text = "Context: two friends met at the park.\nQuestion: who forgot the keys?"
    for tokenizer in tokenizers_of(directory):
        assert tokenizer.encode_text(text) == reference(text)["input_ids"]
        ids = tokenizer.encode_prompt(text)
        assert ids == reference(text)["input_ids"]  # plain prompt: BOS iff the tokenizer adds one, no EOS
        assert (ids[0] == reference.bos_token_id) == bool(options.get("bos"))


def test_chat_template_that_renders_bos_gets_exactly_one(tmp_path):
    from tinymodels import CHATML_BOS, save_tiny_model

    directory = save_tiny_model("llama", tmp_path, bos=True, template=CHATML_BOS)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    messages = [{"role": "user", "content": "Who forgot the keys?"}]
    expected = list(reference.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"])
    for tokenizer in tokenizers_of(directory):
        ids = tokenizer.encode_prompt(tokenizer.apply_chat_template(messages))
        assert ids == expected and ids.count(reference.bos_token_id) == 1
        assert tokenizer.encode_prompt(tokenizer.decode(ids)) == ids  # BOS rendered twice: still one


def test_chat_template_without_bos_gets_the_tokenizers_bos(tmp_path):
    """Never neither: a template that omits the BOS the tokenizer adds to every text gets it prepended."""
    from tinymodels import save_tiny_model

    directory = save_tiny_model("llama", tmp_path, bos=True)  # ChatML, no {{ bos_token }}
    bos = transformers.AutoTokenizer.from_pretrained(directory).bos_token_id
    for tokenizer in tokenizers_of(directory):
        ids = tokenizer.encode_prompt(tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}]))
        assert ids[0] == bos and ids.count(bos) == 1


def test_explicit_add_bos_token_false_wins_over_the_post_processor(tmp_path):
    from tinymodels import save_tiny_model

    directory = save_tiny_model("llama", tmp_path, bos=True, template=None)
    config_path = directory / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "add_bos_token": False}))
    for tokenizer in tokenizers_of(directory):
        assert tokenizer.special_affixes() == ([], [])


# -- BBQ and perplexity against transformers ------------------------------------------------------------------

def test_perplexity_matches_transformers_on_a_bos_model(bos_dir, bos_onnx):
    text, _ = load_text(None)
    expected = reference_perplexity(bos_dir, text, 60)
    without_bos = reference_perplexity(bos_dir, text, 60, add_special_tokens=False)
    assert abs(expected - without_bos) / expected > 1e-3  # the BOS changes the number, so the test can fail
    for path in (bos_dir, bos_onnx):
        runtime = load_runtime(path)
        try:
            got = perplexity(runtime, text, window=64, stride=32, max_tokens=60)
        finally:
            runtime.close()
        assert got["special_prefix"] == [runtime.tokenizer.token_to_id("<bos>")]
        assert got["perplexity"] == pytest.approx(expected, rel=1e-4), (path, got["perplexity"], without_bos)


def test_bbq_letter_scores_match_transformers_on_a_bos_model(bos_dir, bos_onnx):
    items = data.load_bbq(FIXTURE_DIR).items[:3]
    reference = transformers.AutoTokenizer.from_pretrained(bos_dir)
    letters = [sorted({reference(v, add_special_tokens=False)["input_ids"][0] for v in (x, " " + x)}
                      if all(len(reference(v, add_special_tokens=False)["input_ids"]) == 1 for v in (x, " " + x))
                      else {reference(x, add_special_tokens=False)["input_ids"][0]}) for x in "ABC"]
    expected, no_bos = [], []
    for item in items:
        for order in cyclic_orders(3):
            text = letter_prompt(reference, item, order)  # no chat template: the base format
            for ids, out in ((reference(text)["input_ids"], expected),
                             (reference(text, add_special_tokens=False)["input_ids"], no_bos)):
                last = reference_logits(bos_dir, ids)[-1]
                merged = np.array([np.logaddexp.reduce(last[ids_]) for ids_ in letters])
                out.append(merged - np.logaddexp.reduce(merged))
    assert not np.allclose(expected, no_bos, atol=1e-3)
    for path in (bos_dir, bos_onnx):
        runtime = load_runtime(path)
        try:
            preds = score_letters(runtime, items, n_orders=3, batch_size=4)
        finally:
            runtime.close()
        got = [row for p in preds for row in p.extra["order_logprobs"]]
        np.testing.assert_allclose(got, expected, atol=2e-4)


# -- the report: prompt format, fingerprints, weak signal -----------------------------------------------------

POLICY = "bbq: {limit: 24, bootstrap: 100}\n"


def check(tmp_path: Path, model: Path, capsys) -> tuple[int, dict, str]:
    policy, report = tmp_path / "policy.yaml", tmp_path / "r.json"
    policy.write_text(POLICY)
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in ("check", model, "--validators", "bbq", "--policy", policy, "--bbq-data", FIXTURE_DIR,
                               "--report", report)])
    return info.value.code, json.loads(report.read_text()), capsys.readouterr().err


def test_base_model_report_records_prompt_format_and_fingerprints(bos_dir, tmp_path, capsys):
    code, doc, _ = check(tmp_path, bos_dir, capsys)
    prompt = doc["results"]["bbq"]["scoring"]["prompt"]["candidate"]
    assert doc["results"]["bbq"]["scoring"]["prompt_version"] == prompt["version"] == "bbq-base-fewshot-v1"
    assert prompt["format"] == "base" and prompt["special_prefix"] == [FastTokenizer(bos_dir).token_to_id("<bos>")]
    assert prompt["tokenizer"] == FastTokenizer(bos_dir).fingerprint() and len(prompt["prompt_sha256"]) == 64
    assert prompt_info(FastTokenizer(bos_dir)) == prompt  # the same tokenizer fingerprints the same way


def test_fingerprints_change_with_the_tokenizer_or_the_bos_rule(bos_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bos_dir, copy)
    config_path = copy / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "add_bos_token": False}))
    a, b = prompt_info(FastTokenizer(bos_dir)), prompt_info(FastTokenizer(copy))
    assert a["tokenizer"]["sha256"] != b["tokenizer"]["sha256"] and a["prompt_sha256"] != b["prompt_sha256"]


def test_always_a_model_carries_the_weak_signal_warning(tmp_path, capsys):
    from tinymodels import save_always_a_model

    model = save_always_a_model(tmp_path / "always-a")
    code, doc, err = check(tmp_path, model, capsys)
    figures = doc["results"]["bbq"]["signal"]["candidate"]
    assert figures["weak"] and figures["letters_by_order"] == ["A", "A", "A"]
    assert figures["collapse_by_order"] == [1.0, 1.0, 1.0]
    assert "WARNING: weak signal from the candidate" in err and "every shown order" in err


def test_candidate_and_baseline_reading_different_prompt_formats_are_refused(bos_dir, tiny_llama_dir, tmp_path):
    policy, report = tmp_path / "policy.yaml", tmp_path / "r.json"
    policy.write_text(POLICY)
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in ("check", bos_dir, "--baseline", tiny_llama_dir, "--validators", "bbq", "--policy",
                               policy, "--bbq-data", FIXTURE_DIR, "--report", report, "-q")])
    doc = json.loads(report.read_text())
    messages = " ".join(c["message"] for c in doc["checks"]) + " ".join(e["message"] for e in doc["errors"])
    assert info.value.code == 3 and "bbq-base-fewshot-v1" in messages and "bbq-letter-v2" in messages
