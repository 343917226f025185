"""Parity of an export with its source model: fake runtimes for the metrics, tiny real exports for the gate."""
from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from runtime_doubles import FromSequenceLogits

from edgeval.artifacts import Artifact
from edgeval.errors import DataError, MeasurementError
from edgeval.policy import Policy
from edgeval.runtimes.tokenizer import Tokenizer
from edgeval.validators.base import RunContext
from edgeval.validators.bbq.parsing import UNKNOWN_PHRASES, canon
from edgeval.validators.parity import (
    N_ORDERS,
    ParityValidator,
    load_parity_prompts,
    option_choices,
    parity_report,
    truncate_left,
)

V = 128
STATUS_IDS = ("parity.max_abs_logit_diff", "parity.top1_agreement", "parity.letter_agreement",
              "parity.option_agreement", "parity.tokenizer_agreement")


class CharTokenizer(Tokenizer):
    """One token per character: "A" is a single token, " A" is two."""

    chat_template = None
    pad_id = 0
    source = "chars"

    def __init__(self, shift: int = 0):
        self.shift = shift

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [(ord(c) + self.shift) % V for c in text]


class FakeRuntime(FromSequenceLogits):
    """Logits at position t: a decaying sum of fixed random embeddings of tokens 0..t (so the option order counts).

    ``offset`` is added to every logit; ``swap`` exchanges the logits of two tokens (e.g. the letters A and B)."""

    name = "fake"
    artifact = None  # no file: no quantization evidence
    batch_invariant = True

    def __init__(self, offset: float = 0.0, swap: tuple[str, str] | None = None, max_seq_len: int | None = None,
                 tokenizer: CharTokenizer | None = None, vocab: int = V):
        self.table = np.random.default_rng(0).normal(size=(V, vocab)).astype(np.float32)
        self.offset, self.swap, self.max_seq_len = offset, swap, max_seq_len
        self.tokenizer = tokenizer or CharTokenizer()
        self.longest_seen = 0

    def _logits(self, seq: list[int]) -> np.ndarray:
        logits = np.zeros((len(seq), self.table.shape[1]), np.float32)
        state = np.zeros(self.table.shape[1], np.float32)
        for t, token in enumerate(seq):
            state = 0.95 * state + self.table[token]
            logits[t] = state + self.offset
        if self.swap:
            a, b = (ord(letter) for letter in self.swap)
            logits[:, [a, b]] = logits[:, [b, a]]
        return logits.astype(np.float32)

    def sequence_logits(self, sequences):
        self.longest_seen = max([self.longest_seen, *map(len, sequences)])
        return [self._logits(list(s)) for s in sequences]

    def next_token_logits(self, sequences):
        return np.stack([s[-1] for s in self.sequence_logits(sequences)])

    def kv_seq_axes(self) -> None:
        return None

    def describe(self) -> dict:
        return {"runtime": self.name}


def statuses(checks) -> dict[str, str]:
    return {c.id: c.status for c in checks}


# -- the shipped prompts ---------------------------------------------------------------------------------------
def test_shipped_prompts_are_16_valid_items_with_one_unknown_answer():
    items = load_parity_prompts()
    assert len(items) == 16 and len({i.key for i in items}) == 16
    for item in items:
        assert canon(item.answers[item.unknown_idx]) in {canon(p) for p in UNKNOWN_PHRASES}
        assert sum(canon(a) in {canon(p) for p in UNKNOWN_PHRASES} for a in item.answers) == 1
        assert item.label == item.unknown_idx if item.ambiguous else item.label != item.unknown_idx
    assert {i.context_condition for i in items} == {"ambig", "disambig"}
    assert {i.unknown_idx for i in items} == {0, 1, 2}


def test_malformed_prompt_file_names_the_line(tmp_path: Path):
    shipped = resources.files("edgeval").joinpath("data/parity_prompts.jsonl").read_text(encoding="utf-8")
    record = json.loads(shipped.splitlines()[0])
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "example_id": 9, "label": 3}) + "\n")
    with pytest.raises(DataError, match="line 2: 'label'"):
        load_parity_prompts(path)
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match="not unique"):
        load_parity_prompts(path)


# -- metrics on fake runtimes ----------------------------------------------------------------------------------
def test_identical_runtimes_pass_every_check():
    checks, results = parity_report(FakeRuntime(), FakeRuntime(), {})
    assert statuses(checks) == dict.fromkeys(STATUS_IDS, "pass")
    assert results["max_abs_logit_diff"] == 0.0 and results["n_prompts"] == 16 * N_ORDERS
    assert results["truncated_prompts"] == 0 and results["letter_disagreements"] == []


def test_logits_shifted_by_half_fail_only_the_logit_diff():
    checks, results = parity_report(FakeRuntime(offset=0.5), FakeRuntime(), {})
    assert results["max_abs_logit_diff"] == pytest.approx(0.5, abs=1e-5)
    assert results["max_abs_logit_diff_next_token"] == pytest.approx(0.5, abs=1e-5)
    assert statuses(checks) == {**dict.fromkeys(STATUS_IDS, "pass"), "parity.max_abs_logit_diff": "fail"}


def test_swapped_letters_fail_letter_agreement():
    checks, results = parity_report(FakeRuntime(swap=("A", "B")), FakeRuntime(), {})
    status = statuses(checks)
    assert status["parity.letter_agreement"] == "fail" and status["parity.max_abs_logit_diff"] == "fail"
    assert results["letter_agreement"] < 1.0
    first = results["letter_disagreements"][0]
    assert {first["candidate"], first["reference"]} <= {"A", "B", "C"} and first["candidate"] != first["reference"]


def test_option_choice_sums_letter_logprobs_over_orders():
    # one item, three cyclic orders; option 1 wins by a little in every order although "A" is always the letter
    logp = np.log(np.array([[0.5, 0.3, 0.2], [0.5, 0.25, 0.25], [0.5, 0.2, 0.3]]))
    assert option_choices(logp, ((0, 1, 2), (1, 2, 0), (2, 0, 1))).tolist() == [1]


def test_null_threshold_reports_without_gating_and_missing_keys_take_defaults():
    checks, _ = parity_report(FakeRuntime(offset=0.5), FakeRuntime(), {"max_abs_logit_diff": None})
    assert statuses(checks)["parity.max_abs_logit_diff"] == "pass"
    assert next(c for c in checks if c.id == "parity.max_abs_logit_diff").threshold is None


def test_static_length_truncates_from_the_left_and_counts():
    candidate = FakeRuntime(max_seq_len=40)
    checks, results = parity_report(candidate, FakeRuntime(), {})
    assert results["max_seq_len"] == 40 and results["truncation"] == "left"
    assert results["truncated_prompts"] == results["n_prompts"]  # every letter prompt is longer than 40 chars
    assert candidate.longest_seen == 40
    assert statuses(checks) == dict.fromkeys(STATUS_IDS, "pass")
    assert truncate_left([[1, 2, 3], [4]], 2) == ([[2, 3], [4]], 1)


def test_different_tokenizer_fails_tokenizer_agreement():
    checks, results = parity_report(FakeRuntime(), FakeRuntime(tokenizer=CharTokenizer(shift=1)), {})
    assert statuses(checks)["parity.tokenizer_agreement"] == "fail"
    assert results["tokenizer_mismatches"] == results["n_prompts"]


def test_different_vocabulary_is_a_measurement_error():
    with pytest.raises(MeasurementError, match="vocabulary"):
        parity_report(FakeRuntime(vocab=V + 8), FakeRuntime(), {})


# -- the validator -----------------------------------------------------------------------------------------------
def _context(baseline: bool) -> RunContext:
    artifact = Artifact(Path("model.onnx"), "onnx", "0" * 64, 0, ())
    ctx = RunContext(artifact, artifact if baseline else None, Policy(), progress=lambda message: None)
    ctx._runtimes.update(candidate=FakeRuntime(), baseline=FakeRuntime())
    return ctx


def test_validator_without_baseline_is_one_bad_input_error():
    outcome = ParityValidator().run(_context(baseline=False), Policy().section("parity"))
    (check,) = outcome.checks
    assert check.status == "error" and check.error_kind == "bad_input" and "--baseline" in check.message


def test_validator_compares_candidate_with_baseline():
    outcome = ParityValidator().run(_context(baseline=True), Policy().section("parity"))
    assert statuses(outcome.checks) == dict.fromkeys(STATUS_IDS, "pass")
    assert outcome.results["candidate"] == {"runtime": "fake"}


# -- tiny real exports -------------------------------------------------------------------------------------------
def _runtimes(candidate: Path, reference: Path):
    from edgeval.runtimes import load_runtime

    return load_runtime(candidate), load_runtime(reference)


def test_onnx_export_is_at_parity_with_its_source(tiny_llama_onnx: Path, tiny_llama_dir: Path):
    import edgeval

    report = edgeval.check(tiny_llama_onnx, baseline=tiny_llama_dir, validators=["parity"],
                           progress=lambda message: None)
    assert report.verdict == "pass", [c.message for c in report.checks]
    assert report.results["parity"]["max_abs_logit_diff"] < 1e-4
    assert json.loads(report.dumps())["results"]["parity"]["top1_agreement"] == 1.0  # schema-valid report


def _perturbed_copy(model_dir: Path, out: Path, scale: float) -> Path:
    """The source directory with one MLP weight scaled: as if the weights changed after the export."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(model_dir, out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[-1].mlp.down_proj.weight.mul_(scale)
    model.save_pretrained(out)
    return out


def test_export_of_changed_weights_fails_parity(tiny_llama_onnx: Path, tiny_llama_dir: Path, tmp_path: Path):
    changed = _perturbed_copy(tiny_llama_dir, tmp_path / "changed", scale=3.0)
    checks, results = parity_report(*_runtimes(tiny_llama_onnx, changed), {}, items=load_parity_prompts()[:4])
    assert statuses(checks)["parity.max_abs_logit_diff"] == "fail", results["max_abs_logit_diff"]
    assert statuses(checks)["parity.tokenizer_agreement"] == "pass"


def test_export_of_another_model_fails_parity(tiny_llama_onnx: Path, tmp_path: Path):
    from tinymodels import save_tiny_model

    other = save_tiny_model("llama", tmp_path / "other", seed=1)
    checks, results = parity_report(*_runtimes(tiny_llama_onnx, other), {}, items=load_parity_prompts()[:4])
    status = statuses(checks)
    # a random tiny model with tied embeddings predicts its last input token whatever the seed: top-1 agrees
    assert status["parity.max_abs_logit_diff"] == "fail" and status["parity.letter_agreement"] == "fail"
    assert results["max_abs_logit_diff"] > 0.1


@pytest.mark.tflite
def test_tflite_export_is_at_parity_after_left_truncation(tiny_llama_tflite: Path, tiny_llama_dir: Path):
    checks, results = parity_report(*_runtimes(tiny_llama_tflite, tiny_llama_dir), {})
    assert statuses(checks) == dict.fromkeys(STATUS_IDS, "pass"), [c.message for c in checks]
    assert results["max_seq_len"] == 32 and results["truncated_prompts"] == results["n_prompts"]
    assert results["max_abs_logit_diff"] < 1e-3
