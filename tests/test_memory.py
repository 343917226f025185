"""Memory that does not grow with the vocabulary: forward passes sized by the logits budget, log-probabilities
computed a block of rows at a time, and the same numbers as the full-logits path.

The 256k-vocabulary model here is a hand-built bigram ONNX (tinymodels.save_wide_vocab_onnx, written in a second
or two); benchmarks/memory_vocab.py measures `edgeval check` on the real tiny Llama at 256k and on SmolLM2."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from runtime_doubles import FromSequenceLogits

import edgeval.logprobs as logprobs
from edgeval.artifacts import load_artifact
from edgeval.errors import MeasurementError, UsageError
from edgeval.logprobs import BUDGET_ENV, LOGITS_BUDGET, log_softmax, logits_budget, rows_within_budget, token_logprobs
from edgeval.runtimes.base import all_finite
from edgeval.runtimes.onnx import OnnxRuntime
from edgeval.runtimes.torch import TorchRuntime
from edgeval.validators.parity import compare_logits
from edgeval.validators.perplexity import load_text, perplexity


# -- sizing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seq,vocab", [(1, 1000), (64, 256_000), (256, 262_144), (400, 49_152), (30, 49_152)])
def test_rows_are_as_many_as_fit_the_budget(seq, vocab):
    rows = rows_within_budget(seq, vocab, LOGITS_BUDGET, 32)
    assert 1 <= rows <= 32
    assert rows == 1 or rows * seq * vocab * 4 <= LOGITS_BUDGET
    assert rows == 32 or (rows + 1) * seq * vocab * 4 > LOGITS_BUDGET


def test_one_row_when_even_one_exceeds_the_budget_and_most_when_the_vocabulary_is_unknown():
    assert rows_within_budget(256, 256_000, LOGITS_BUDGET, 32) == 1
    assert rows_within_budget(100, 1000, LOGITS_BUDGET, 32) == 32
    assert rows_within_budget(100, None, 1, 7) == 7


def test_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert logits_budget() == LOGITS_BUDGET == 256 * 2**20
    monkeypatch.setenv(BUDGET_ENV, "8")
    assert logits_budget() == 8 * 2**20
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(UsageError, match=BUDGET_ENV):
            logits_budget()


def test_blockwise_token_logprobs_equal_one_log_softmax_over_all_rows(monkeypatch):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (37, 3001)).astype(np.float32)
    targets = rng.integers(0, 3001, 37)
    whole = log_softmax(logits)[np.arange(37), targets]
    monkeypatch.setattr(logprobs, "SCRATCH_BYTES", 5 * 3001 * 8)  # 5 rows a block, the last one short
    assert np.array_equal(token_logprobs(logits, targets), whole)


def test_finite_check_reads_only_real_positions():
    logits = np.zeros((2, 3, 4), np.float32)
    mask = np.ones((2, 3), bool)
    logits[1, 0, 2] = np.nan
    assert not all_finite(logits, mask) and not all_finite(logits)
    mask[1, 0] = False  # a padding position: its NaN does not count
    assert all_finite(logits, mask)
    assert not all_finite(np.array([[1.0, np.inf]]))


# -- a 256k-vocabulary model -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> dict[str, Path]:
    """The bigram LM at 256k tokens, with and without a next_token_logits output, one tokenizer beside both."""
    from tinymodels import save_wide_vocab_onnx

    folder = tmp_path_factory.mktemp("wide-vocab")
    return {"plain": save_wide_vocab_onnx(folder), "next": save_wide_vocab_onnx(folder, next_token=True,
                                                                                  name="next.onnx")}


def _seqs(n: int, length: int) -> list[list[int]]:
    return [[(7 * i + 13 * t) % 900 + 4 for t in range(length - i)] for i in range(n)]


def _old_logprobs(runtime, seqs):
    """What validators computed before: full logits of the batch, a float64 log-softmax of every position."""
    logits = runtime.sequence_logits(seqs)
    return [log_softmax(rows[:-1])[np.arange(len(seq) - 1), seq[1:]] for seq, rows in zip(seqs, logits, strict=True)]


def _traced_peak(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sequence_logprobs_at_256k_equal_the_old_path_in_a_fraction_of_the_memory(wide, monkeypatch):
    runtime = OnnxRuntime(load_artifact(wide["plain"]))
    seqs = _seqs(4, 48)
    old, old_peak = _traced_peak(lambda: _old_logprobs(runtime, seqs))
    monkeypatch.setenv(BUDGET_ENV, "16")  # below one row (48 x 256k x 4 = 47 MiB): one sequence per pass
    shapes = _record_forwards(runtime, monkeypatch)
    new, new_peak = _traced_peak(lambda: runtime.sequence_logprobs(seqs))
    assert all(np.array_equal(a, b) for a, b in zip(new, old, strict=True))
    assert [s[0] for s in shapes] == [1, 1, 1, 1]
    row = 48 * 256_000 * 4
    assert old_peak > 4 * row  # the old path holds the batch's logits and (T, V) float64 copies
    assert new_peak < row + 6 * logprobs.SCRATCH_BYTES  # one sequence's logits and one log-softmax block


def test_sequence_logprobs_score_from_the_given_positions(wide):
    runtime = OnnxRuntime(load_artifact(wide["plain"]))
    seqs = _seqs(3, 20)
    full = runtime.sequence_logprobs(seqs)
    part = runtime.sequence_logprobs(seqs, [5, 1, len(seqs[2])])
    assert np.array_equal(part[0], full[0][4:]) and np.array_equal(part[1], full[1]) and part[2].size == 0
    with pytest.raises(ValueError, match="start position"):
        runtime.sequence_logprobs(seqs, [0, 1, 1])


def _record_forwards(runtime, monkeypatch) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    forward = runtime._forward

    def recorded(*args, **kwargs):
        out = forward(*args, **kwargs)
        shapes.append(np.asarray(out).shape)
        return out

    monkeypatch.setattr(runtime, "_forward", recorded)
    return shapes


def test_next_token_batches_fit_the_budget_without_a_last_position_output(wide, monkeypatch):
    runtime = OnnxRuntime(load_artifact(wide["plain"]))
    assert not runtime.computes_last_only()
    seqs = _seqs(6, 30)
    expected = runtime.next_token_logits_many(seqs, max_rows=32)
    monkeypatch.setenv(BUDGET_ENV, "64")  # 2 rows of 30 x 256k float32 logits (29 MiB each)
    shapes = _record_forwards(runtime, monkeypatch)
    got = runtime.next_token_logits_many(seqs, max_rows=32)
    assert np.array_equal(got, expected)
    assert shapes and all(np.prod(s) * 4 <= 64 * 2**20 for s in shapes) and max(s[0] for s in shapes) == 2


def test_a_last_position_output_is_used_whatever_the_budget(wide, monkeypatch):
    runtime = OnnxRuntime(load_artifact(wide["next"]))
    assert runtime.computes_last_only()
    monkeypatch.setenv(BUDGET_ENV, "1")
    shapes = _record_forwards(runtime, monkeypatch)
    runtime.next_token_logits_many(_seqs(6, 30), max_rows=32)
    assert shapes == [(6, 1, 256_000)]


# -- the same numbers on the tiny Llama ---------------------------------------------------------------------------
class _LogitsOnly(FromSequenceLogits):
    """A runtime reduced to sequence_logits: log-probs from the full logits in one piece, the old path."""

    def __init__(self, runtime):
        self.tokenizer, self.artifact, self.max_seq_len = runtime.tokenizer, runtime.artifact, runtime.max_seq_len
        self.sequence_logits = runtime.sequence_logits


@pytest.fixture(scope="module")
def runtimes(tiny_llama_onnx, tiny_llama_dir):
    return {"onnx": OnnxRuntime(load_artifact(tiny_llama_onnx)), "torch": TorchRuntime(load_artifact(tiny_llama_dir))}


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_perplexity_is_unchanged(runtimes, kind, monkeypatch):
    runtime = runtimes[kind]
    text, _ = load_text(None)
    old = perplexity(_LogitsOnly(runtime), text, 64, 32, 400)
    assert perplexity(runtime, text, 64, 32, 400) == old  # default budget: the same batches, the same numbers
    monkeypatch.setenv(BUDGET_ENV, "0.1")  # one window per pass
    tight = perplexity(runtime, text, 64, 32, 400)
    assert tight["tokens_scored"] == old["tokens_scored"]
    assert tight["nll_mean"] == pytest.approx(old["nll_mean"], rel=1e-6)


def test_parity_batches_follow_the_budget_with_the_same_figures(runtimes, monkeypatch):
    seqs = _seqs(6, 24)
    cand, ref, stats = compare_logits(runtimes["onnx"], runtimes["torch"], seqs)
    calls = []
    original = runtimes["onnx"].sequence_logits
    monkeypatch.setattr(runtimes["onnx"], "sequence_logits", lambda batch: calls.append(len(batch)) or original(batch))
    monkeypatch.setenv(BUDGET_ENV, str(2 * 24 * 1000 * 4 / 2**20))  # two prompts of 24 x 1000 logits
    cand2, ref2, stats2 = compare_logits(runtimes["onnx"], runtimes["torch"], seqs)
    assert calls == [2, 2, 2]
    np.testing.assert_allclose(cand2, cand, atol=1e-5)
    np.testing.assert_allclose(ref2, ref, atol=1e-5)
    for key in ("max_abs_logit_diff", "mean_abs_logit_diff", "mean_kl", "candidate_nll", "reference_nll"):
        assert stats2[key] == pytest.approx(stats[key], rel=1e-3, abs=1e-6), key
    assert stats2["positions"] == stats["positions"]


def test_nan_logits_are_still_refused(wide, monkeypatch):
    runtime = OnnxRuntime(load_artifact(wide["plain"]))
    monkeypatch.setattr(runtime, "_forward", lambda ids, mask, output=None: np.full((*ids.shape, 256_000), np.nan,
                                                                                    np.float32))
    with pytest.raises(MeasurementError, match="NaN"):
        runtime.sequence_logprobs(_seqs(2, 5))


# -- the real tiny Llama at 256k (an export takes ~10-40 s: slow) ------------------------------------------------
@pytest.fixture(scope="session")
def wide_llama(tmp_path_factory) -> dict[str, Path]:
    """The tiny Llama with a 256k vocabulary: its HF directory and a legacy ONNX export beside the tokenizer."""
    from tinymodels import save_wide_vocab_model

    from edgeval.converters.export import export_onnx

    hf = save_wide_vocab_model(tmp_path_factory.mktemp("wide-llama"))
    return {"hf": hf, "onnx": export_onnx(hf, tmp_path_factory.mktemp("wide-llama-onnx") / "model.onnx",
                                          legacy=True)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_perplexity_of_a_256k_llama_stays_within_the_budget(wide_llama, kind, monkeypatch):
    artifact = load_artifact(wide_llama["onnx" if kind == "onnx" else "hf"])
    runtime = OnnxRuntime(artifact) if kind == "onnx" else TorchRuntime(artifact)
    text, _ = load_text(None)
    old = perplexity(_LogitsOnly(runtime), text, 64, 32, 256)  # 4 windows of 64 x 256k logits per pass
    monkeypatch.setenv(BUDGET_ENV, "32")  # one 64-token window of 256k logits is 62.5 MiB: one per pass
    shapes = _record_forwards(runtime, monkeypatch)
    new, new_peak = _traced_peak(lambda: perplexity(runtime, text, 64, 32, 256))
    assert new["nll_mean"] == pytest.approx(old["nll_mean"], rel=1e-6)
    assert len(shapes) == new["windows"] and all(s[0] == 1 for s in shapes)  # the logits: one window at a time
    assert new_peak < 6 * logprobs.SCRATCH_BYTES  # numpy scratch (float64 blocks) stays a few blocks


def test_static_validators_run_before_any_model_is_loaded_and_the_report_keeps_the_policy_order(tiny_llama_onnx):
    """size reads files only (it may hold the parsed ONNX graph, as large as the file): it runs before the
    validators that load the model, so that the two do not add up; the report lists checks in the policy's order."""
    from edgeval.api import CheckOptions, check
    from edgeval.policy import Policy

    seen: list[str] = []
    policy = Policy.from_dict({"validators": ["perplexity", "size"], "perplexity": {"max_tokens": 64}})
    report = check(tiny_llama_onnx, tiny_llama_onnx, policy, options=CheckOptions(validators=["perplexity", "size"]),
                   progress=seen.append)
    first = {name: next(i for i, m in enumerate(seen) if m.startswith(name)) for name in ("size", "perplexity")}
    assert first["size"] < first["perplexity"]
    assert [c.validator for c in report.checks][0] == "perplexity" and list(report.results) == ["perplexity", "size"]


# -- one model at a time (--resident) ----------------------------------------------------------------------------
def _check_recording_opens(candidate, baseline, resident, looks):
    """A bbq + perplexity check (candidate ONNX vs baseline on torch); returns the report and, for every model
    opened, (role, the roles still open at that moment)."""
    from bbq_fixture import FIXTURE_DIR

    from edgeval.api import CheckOptions, check
    from edgeval.policy import Policy
    from edgeval.validators.base import RunContext

    opens: list[tuple[str, tuple[str, ...]]] = []
    real = RunContext.open_runtime

    def recording(self, role, threads=None):
        opens.append((role, tuple(sorted(self._runtimes))))
        return real(self, role, threads)

    policy = Policy.from_dict({"validators": ["bbq", "perplexity"], "perplexity": {"max_tokens": 64},
                               "bbq": {"limit": 56, "bootstrap": 100, "data_dir": str(FIXTURE_DIR),
                                       "early_stop_looks": looks}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunContext, "open_runtime", recording)
        report = check(candidate, baseline, policy, options=CheckOptions(resident=resident, threads=1, resume=False),
                       progress=lambda m: None)
    return report, opens


@pytest.mark.parametrize("looks,candidate", [(None, "onnx"), (3, "onnx"), (3, "gguf")],
                         ids=["fixed sample", "early-stop looks", "llama.cpp, early-stop looks"])
def test_one_model_at_a_time_gives_the_same_report_and_never_holds_both_while_scoring(
        request, tiny_llama_dir, looks, candidate):
    """--resident one: BBQ and perplexity never open a model while the other is loaded, the loaded one scores
    first (reloads are few), the token counts add up over reloads, and every check and figure equals the run that
    keeps both models loaded. llama.cpp keeps a KV cache between calls: a reload must not change what it gives."""
    if candidate == "gguf":
        pytest.importorskip("llama_cpp")
    model = request.getfixturevalue(f"tiny_llama_{candidate}")
    one, opens_one = _check_recording_opens(model, tiny_llama_dir, "one", looks)
    both, opens_both = _check_recording_opens(model, tiny_llama_dir, "both", looks)
    assert all(still_open == () for _, still_open in opens_one), opens_one
    assert sorted(role for role, _ in opens_both) == ["baseline", "candidate"]  # both: each opened once, kept
    assert len(opens_one) <= 3 + (looks or 1)  # prompt formats (2), one reload a look, one for perplexity
    assert one.run["resident"] == "one" and both.run["resident"] == "both"

    def figures(report):
        doc = report.to_json()
        compute = doc["results"]["bbq"].pop("compute")
        return json.dumps([doc["checks"], doc["results"]], sort_keys=True), compute

    (one_figures, one_compute), (both_figures, both_compute) = figures(one), figures(both)
    assert one.verdict == both.verdict and one_figures == both_figures
    for role in ("candidate", "baseline"):
        loads = one_compute[role].pop("loads")
        assert 1 <= loads <= sum(r == role for r, _ in opens_one) and both_compute[role].pop("loads") == 1
        assert one_compute[role] == both_compute[role]  # tokens asked and run: summed over the reloads


def test_resident_comes_from_the_command_line_then_the_policy_then_the_device(tiny_llama_onnx, tmp_path):
    from edgeval.api import CheckOptions, _resident
    from edgeval.cli import main
    from edgeval.policy import Policy
    from edgeval.runtimes.options import RuntimeOptions

    in_policy = Policy.from_dict({"runtime": {"resident": "both"}})
    cpu, cuda = RuntimeOptions(), RuntimeOptions(provider="cuda")
    assert _resident(CheckOptions(), Policy.default(), cpu) == "one"
    assert _resident(CheckOptions(), Policy.default(), RuntimeOptions(provider="CPUExecutionProvider")) == "one"
    assert _resident(CheckOptions(), Policy.default(), cuda) == "both"  # a reload rebuilds the device's engine
    assert _resident(CheckOptions(), Policy.default(), RuntimeOptions(device="cuda:1")) == "both"
    assert _resident(CheckOptions(), in_policy, cpu) == "both"
    assert _resident(CheckOptions(resident="one"), in_policy, cuda) == "one"  # the command line wins
    with pytest.raises(SystemExit):
        main(["check", str(tiny_llama_onnx), "--validators", "size", "--resident", "both", "--report",
              str(tmp_path / "r.json"), "-q"])
    assert json.loads((tmp_path / "r.json").read_text())["run"]["resident"] == "both"


def test_memory_is_given_back_without_glibc(monkeypatch):
    import ctypes

    from edgeval.validators.base import release_memory

    def no_libc(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    release_memory()  # macOS, musl: a collection only, never an error


def test_one_model_at_a_time_is_a_run_setting_of_the_cli_and_the_policy(tmp_path):
    from click.testing import CliRunner

    from edgeval.api import CheckOptions
    from edgeval.cli.app import cli
    from edgeval.errors import PolicyError
    from edgeval.policy import validate_policy
    from edgeval.validators.base import RunContext

    with pytest.raises(UsageError, match="resident"):
        CheckOptions(resident="three")
    with pytest.raises(UsageError, match="resident"):
        RunContext(candidate=None, baseline=None, policy=None, resident="some")
    with pytest.raises(PolicyError, match="resident"):
        validate_policy({"runtime": {"resident": "some"}}, "p.yaml")
    got = CliRunner().invoke(cli, ["check", str(tmp_path / "m.onnx"), "--resident", "many"])
    assert got.exit_code == 2 and "--resident" in got.output


def test_sessions_take_initializers_outside_the_arena_unless_told_otherwise():
    ort = pytest.importorskip("onnxruntime")
    from edgeval.runtimes.onnx import INITIALIZERS_ENTRY, session_options
    from edgeval.runtimes.options import RuntimeOptions

    assert session_options(ort, RuntimeOptions()).get_session_config_entry(INITIALIZERS_ENTRY) == "1"
    told = RuntimeOptions(session={INITIALIZERS_ENTRY: "0"})
    assert session_options(ort, told).get_session_config_entry(INITIALIZERS_ENTRY) == "0"
