"""Wanda: masks against a brute-force |W|·‖X‖₂, sequential calibration through pruned blocks, calibration text.

The reference computations here use plain forward hooks, explicit per-column loops and argsort; they call nothing
from ``edgeval.converters.pruning`` except ``prune_model`` itself (the thing under test).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tinymodels import build_tokenizer, tiny_model  # noqa: E402

from edgeval.converters.pruning import Calibration, CalibrationWarning, load_calibration, prune_model  # noqa: E402
from edgeval.errors import BadInputError, DataError  # noqa: E402

SPARSITY = 0.5


def ids(n: int = 4, seq: int = 32, seed: int = 0) -> "torch.Tensor":
    return torch.randint(0, 1000, (n, seq), generator=torch.Generator().manual_seed(seed))


def linear_inputs(model, names: list[str], token_ids) -> dict[str, "torch.Tensor"]:
    """Inputs to the named modules over all tokens, ``(tokens, in)``, from ordinary per-window forward passes."""
    modules = dict(model.named_modules())
    seen: dict[str, list] = {name: [] for name in names}
    handles = [modules[name].register_forward_hook(
        lambda _m, inputs, _o, name=name: seen[name].append(inputs[0].reshape(-1, inputs[0].shape[-1])))
        for name in names]
    with torch.no_grad():
        for row in token_ids:
            model(input_ids=row.unsqueeze(0), use_cache=False)
    for handle in handles:
        handle.remove()
    return {name: torch.cat(chunks).double() for name, chunks in seen.items()}


def weight_out_in(module) -> "torch.Tensor":
    from transformers.pytorch_utils import Conv1D

    return module.weight.detach().t() if isinstance(module, Conv1D) else module.weight.detach()


def brute_force_keep(weight: "torch.Tensor", x: "torch.Tensor", sparsity: float) -> "torch.Tensor":
    """Wanda's keep-mask, the slow way: per input column j, ‖X_j‖₂ = sqrt(Σ_t x_tj²); per row, drop the lowest."""
    rows, cols = weight.shape
    norms = torch.zeros(cols, dtype=torch.float64)
    for j in range(cols):
        column = x[:, j]
        norms[j] = torch.sqrt(torch.sum(column * column))
    scores = weight.double().abs() * norms.unsqueeze(0)
    drop = int(cols * sparsity)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    for r in range(rows):
        keep[r, torch.argsort(scores[r])[:drop]] = False
    return keep


def names_in_block(model, block: int) -> list[str]:
    from transformers.pytorch_utils import Conv1D

    marker = (f".layers.{block}.", f".h.{block}.")
    return [name for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D)) and any(k in name for k in marker)]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_block0_masks_equal_brute_force(kind):
    token_ids = ids()
    dense, model = tiny_model(kind), tiny_model(kind)
    prune_model(model, "wanda", SPARSITY, calibration=Calibration.from_ids(token_ids))
    names = names_in_block(dense, 0)
    assert len(names) == (7 if kind == "llama" else 4)
    inputs = linear_inputs(dense, names, token_ids)
    pruned, original = dict(model.named_modules()), dict(dense.named_modules())
    for name in names:
        expected = brute_force_keep(weight_out_in(original[name]), inputs[name], SPARSITY)
        assert torch.equal(weight_out_in(pruned[name]) != 0, expected), name


def test_single_layer_toy_by_hand():
    """A 2×4 weight and 3 tokens, worked out on paper: scores |W|·‖X‖ = [[1·1, 2·2, 1·3, 4·0.5], …]."""
    from edgeval.converters.pruning.masks import unstructured_mask

    weight = torch.tensor([[1.0, -2.0, 1.0, 4.0], [3.0, 1.0, -1.0, 1.0]])
    x = torch.tensor([[1.0, 0.0, 0.0, 0.3], [0.0, 2.0, 0.0, 0.4], [0.0, 0.0, 3.0, 0.0]])  # ‖X‖ = 1, 2, 3, 0.5
    scores = weight.abs() * x.norm(dim=0)  # [[1, 4, 3, 2], [3, 2, 3, 0.5]]
    keep = unstructured_mask(scores, 0.5, per_row=True)
    assert keep.tolist() == [[False, True, True, False], [True, False, True, False]]
    assert torch.equal(keep, brute_force_keep(weight, x.double(), 0.5))


def gemma3_sliding():
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                              sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                              bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="eager")
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("build", [lambda: tiny_model("llama"), gemma3_sliding], ids=["llama", "gemma3-sliding"])
def test_block1_is_calibrated_on_pruned_block0_outputs(build):
    """Block 1's masks equal a manual sequential computation and differ from a dense (one-shot) one.

    Gemma 3 here has a sliding-window block 0 and a full-attention block 1 (window 8 < 32 tokens): block 1's
    masks only match when block 1 is replayed with its own attention mask, not block 0's.
    """
    token_ids = ids()
    model, dense, sequential = build(), build(), build()
    prune_model(model, "wanda", SPARSITY, calibration=Calibration.from_ids(token_ids))
    sequential.model.layers[0].load_state_dict(model.model.layers[0].state_dict())  # pruned block 0, dense block 1
    names = names_in_block(dense, 1)
    seq_inputs, dense_inputs = linear_inputs(sequential, names, token_ids), linear_inputs(dense, names, token_ids)
    pruned, original = dict(model.named_modules()), dict(dense.named_modules())
    differs = []
    for name in names:
        weight = weight_out_in(original[name])
        keep_seq = brute_force_keep(weight, seq_inputs[name], SPARSITY)
        assert torch.equal(weight_out_in(pruned[name]) != 0, keep_seq), name
        differs.append(not torch.equal(keep_seq, brute_force_keep(weight, dense_inputs[name], SPARSITY)))
    assert all(differs)  # every block-1 layer would get another mask from dense inputs


def test_wanda_differs_from_magnitude():
    a, b = tiny_model("llama"), tiny_model("llama")
    prune_model(a, "wanda", SPARSITY, calibration=Calibration.from_ids(ids()))
    prune_model(b, "magnitude", SPARSITY, per_row=True)
    assert not torch.equal(a.model.layers[0].mlp.down_proj.weight, b.model.layers[0].mlp.down_proj.weight)


# --- calibration text -----------------------------------------------------------------------------------------

SHIPPED = Path(__file__).parents[1] / "edgeval" / "data" / "calibration.txt"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def test_shipped_corpus_windows_are_seeded(tokenizer):
    text = SHIPPED.read_text(encoding="utf-8")
    assert len(text.splitlines()) >= 250
    a = load_calibration(tokenizer, n_samples=6, seq_len=40, seed=0)
    b = load_calibration(tokenizer, n_samples=6, seq_len=40, seed=0)
    c = load_calibration(tokenizer, n_samples=6, seq_len=40, seed=1)
    assert a.ids.shape == (6, 40) and torch.equal(a.ids, b.ids) and not torch.equal(a.ids, c.ids)
    assert a.sha256 == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    stream = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert a.corpus_tokens == len(stream)
    windows = {tuple(stream[i:i + 40]) for i in range(len(stream) - 39)}
    assert all(tuple(row.tolist()) in windows for row in a.ids)  # contiguous slices of the corpus


def test_wanda_with_text_records_calibration(tokenizer, tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("Plain words about rivers, bread and trains. " * 40)
    result = prune_model(tiny_model("llama"), "wanda", SPARSITY, calibration=corpus, tokenizer=tokenizer,
                         n_samples=3, seq_len=24, seed=5)
    recorded = result.manifest["calibration"]
    assert recorded["source"] == str(corpus) and recorded["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert (recorded["n_samples"], recorded["seq_len"], recorded["seed"]) == (3, 24, 5)


def test_short_or_undecodable_text_is_a_data_error(tokenizer, tmp_path):
    short, binary = tmp_path / "short.txt", tmp_path / "binary.txt"
    short.write_text("too short")
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="fewer than seq_len=64") as info:
        load_calibration(tokenizer, short, n_samples=2, seq_len=64)
    assert str(short) in str(info.value)
    with pytest.raises(DataError, match="not UTF-8"):
        load_calibration(tokenizer, binary)


def test_calibration_ids_must_be_2d():
    with pytest.raises(BadInputError, match="non-empty"):
        Calibration.from_ids(torch.zeros(5, dtype=torch.long))


# --- calibration honesty: distinct tokens, bigger corpora, BOS ------------------------------------------------

def test_shipped_corpus_is_too_small_for_the_default_request_and_says_so(tokenizer):
    with pytest.warns(CalibrationWarning, match="distinct tokens of the 65,536 requested"):
        calib = load_calibration(tokenizer)  # Wanda's default: 128 x 512
    recorded = calib.to_json()
    assert recorded["requested_tokens"] == 65_536 and recorded["distinct_tokens"] <= recorded["corpus_tokens"]
    assert recorded["warning"] and "--calibration" in recorded["warning"]
    covered = set()  # brute force: corpus positions that some window covers
    stream = tokenizer(SHIPPED.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    for row in calib.ids.tolist():
        start = next(i for i in range(len(stream) - 511) if stream[i:i + 512] == row)
        covered.update(range(start, start + 512))
    assert recorded["distinct_tokens"] == len(covered)


def test_enough_text_gives_no_warning(tokenizer, recwarn):
    """The shipped text has more tokens than 4 x 64: overlapping random windows are reported, not warned about."""
    calib = load_calibration(tokenizer, n_samples=4, seq_len=64, seed=0)
    assert calib.to_json()["warning"] is None and 0 < calib.distinct_tokens <= 4 * 64
    assert not [w for w in recwarn if issubclass(w.category, CalibrationWarning)]


def test_directory_and_jsonl_corpora(tokenizer, tmp_path):
    docs = ["Plain words about rivers and bread. " * 30, "Trains leave the station at noon. " * 30]
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(docs[0])
    (folder / "sub" / "b.txt").write_text(docs[1])
    (folder / "ignored.md").write_text("not a .txt")
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)) + "\n")
    from edgeval.converters.pruning.calibration import read_text

    (dir_text, dir_source, dir_sha), (jsonl_text, _, jsonl_sha) = read_text(folder), read_text(jsonl)
    assert dir_text == jsonl_text == "\n\n".join(d.strip() for d in docs) and dir_source == str(folder)
    assert len(dir_sha) == len(jsonl_sha) == 64 and dir_sha != jsonl_sha
    calib = load_calibration(tokenizer, jsonl, n_samples=4, seq_len=64)
    assert calib.corpus_tokens == len(tokenizer(jsonl_text, add_special_tokens=False)["input_ids"]) > 4 * 64
    with pytest.warns(CalibrationWarning, match=f"the corpus has {calib.corpus_tokens:,}"):
        load_calibration(tokenizer, jsonl, n_samples=calib.corpus_tokens // 64 + 1, seq_len=64)


@pytest.mark.parametrize("content, match", [('{"text": "ok"}\nnot json\n', r"corpus.jsonl:2: invalid JSON"),
                                            ('{"body": "no text field"}\n', r"corpus.jsonl:1: expected an object")])
def test_bad_jsonl_lines_name_file_and_line(tokenizer, tmp_path, content, match):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_calibration(tokenizer, path, n_samples=1, seq_len=8)


def test_empty_directory_is_a_data_error(tokenizer, tmp_path):
    with pytest.raises(DataError, match="no .txt files"):
        load_calibration(tokenizer, tmp_path, n_samples=1, seq_len=8)


def test_windows_start_with_the_bos_the_tokenizer_adds(tmp_path):
    bos_tokenizer = build_tokenizer(tmp_path / "tok", bos=True, template=None)
    bos = bos_tokenizer.convert_tokens_to_ids("<bos>")
    calib = load_calibration(bos_tokenizer, n_samples=5, seq_len=40, seed=0)
    assert calib.ids.shape == (5, 40) and (calib.ids[:, 0] == bos).all() and not (calib.ids[:, 1:] == bos).any()
    assert calib.to_json()["special_prefix"] == [bos]
