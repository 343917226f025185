"""The fast KV-cache export (grouped attention, last-logits switch) against the plain one, on the tiny Llama.

The grouped export must give the logits of the unfused one on what the prompt tree feeds it: left-padded batches
whose rows have different past lengths (padding inside the past), and the answers (argmax) must not move."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeval.runtimes import load_runtime
from edgeval.runtimes.base import position_ids


def _ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


@pytest.fixture(scope="module")
def exports(tiny_llama_dir, tmp_path_factory) -> dict[str, Path]:
    from edgeval.converters.export import export_onnx

    root = tmp_path_factory.mktemp("fused")
    return {name: export_onnx(tiny_llama_dir, root / name / "model.onnx", legacy=True, kv_cache=True,
                              next_token_output=True, fused_attention=fused)
            for name, fused in (("fused", None), ("unfused", False))}


def test_grouped_attention_equals_eager_in_torch_and_is_undone():
    import torch
    from tinymodels import tiny_model

    from edgeval.converters import kv_export

    model = tiny_model("llama")
    ids = torch.randint(5, 900, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones((3, 9), dtype=torch.int64)
    mask[0, :4], mask[1, :1] = 0, 0  # left padding, two widths
    with torch.no_grad():
        eager = model(input_ids=ids, attention_mask=mask).logits
        with kv_export.grouped(model, True) as on:
            fused = model(input_ids=ids, attention_mask=mask).logits
    assert on and model.config._attn_implementation == "eager"
    real = mask.bool()
    torch.testing.assert_close(fused[real], eager[real], atol=1e-5, rtol=0)


def test_grouped_attention_only_where_it_is_exact():
    from tinymodels import tiny_model

    from edgeval.converters import kv_export

    gpt2, llama = tiny_model("gpt2"), tiny_model("llama")
    assert not kv_export.supports_grouped(gpt2) and kv_export.supports_grouped(llama)
    llama.config.num_key_value_heads = llama.config.num_attention_heads  # plain multi-head: nothing to fold
    assert not kv_export.supports_grouped(llama)
    with kv_export.grouped(gpt2, True) as on:
        assert not on


def test_fused_export_drops_repeat_kv_and_has_the_switch(exports):
    fused, unfused = _ops(exports["fused"]), _ops(exports["unfused"])
    assert fused.count("Expand") < unfused.count("Expand")  # repeat_kv: one Expand per key and value per layer
    for path in exports.values():
        runtime = load_runtime(path)
        assert runtime.last_switch and runtime.kv_seq_axes() is not None


def _tree_batch(runtime, rng):
    """A cached step as the tree runs it: rows with pasts of different real lengths (left padding inside the
    past), left-padded new segments of different lengths."""
    past_len, seg = 7, 5
    first = np.zeros((3, past_len), np.int64)
    for row, real in enumerate((7, 4, 2)):
        first[row, past_len - real:] = 1
    ids0 = rng.integers(5, 900, (3, past_len))
    _, present = runtime._cached_step(ids0, first, position_ids(first), None, True)
    new = np.zeros((3, seg), np.int64)
    for row, real in enumerate((5, 2, 3)):
        new[row, seg - real:] = 1
    mask = np.concatenate([first, new], axis=1)
    ids = rng.integers(5, 900, (3, seg))
    return ids, mask, position_ids(mask)[:, -seg:], present


def test_fused_cached_steps_equal_unfused_on_left_padded_pasts(exports):
    fused, unfused = (load_runtime(exports[k]) for k in ("fused", "unfused"))
    ids, mask, positions, past = _tree_batch(unfused, np.random.default_rng(0))
    a, present_a = fused._cached_step(ids, mask, positions, past, True)
    b, present_b = unfused._cached_step(ids, mask, positions, past, True)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    for x, y in zip(present_a, present_b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)


def test_switch_keeps_the_last_logits_and_defaults_to_every_position(exports):
    runtime = load_runtime(exports["fused"])
    ids, mask, positions, past = _tree_batch(runtime, np.random.default_rng(1))
    last, _ = runtime._cached_step(ids, mask, positions, past, False)
    runtime.last_switch = False  # the graph's default: the LM head at every position
    every, _ = runtime._cached_step(ids, mask, positions, past, False)
    np.testing.assert_allclose(last, every, atol=1e-5, rtol=0)
    full = runtime.sequence_logits([[5, 6, 7, 8]])[0]  # plain forward passes never feed the switch
    assert full.shape[0] == 4


def test_tree_answers_equal_between_fused_unfused_and_full_prompts(exports):
    from test_runtimes import prompt_tree

    fused, unfused = (load_runtime(exports[k]) for k in ("fused", "unfused"))
    sequences = prompt_tree()
    a = fused.next_token_logits_many(sequences, max_rows=3, window=20)
    b = unfused.next_token_logits_many(sequences, max_rows=8, window=64)
    full = unfused.next_token_logits(sequences)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    np.testing.assert_allclose(a, full, atol=1e-4, rtol=0)
    assert (a.argmax(-1) == full.argmax(-1)).all()
    assert fused.tokens_computed < 0.6 * fused.tokens_requested


def test_graph_without_the_switch_falls_back(optimum_layout_onnx_int32, tmp_path):
    """A KV graph edgeval did not write (optimum's layout): no switch, same tree answers as full prompts; and the
    rewrite refuses a graph whose logits no MatMul computes."""
    import onnx
    from onnx import TensorProto, helper

    from edgeval.converters.kv_export import add_last_logits_switch

    runtime = load_runtime(optimum_layout_onnx_int32)
    assert not runtime.last_switch
    from test_runtimes import prompt_tree

    sequences = prompt_tree()
    np.testing.assert_allclose(runtime.next_token_logits_many(sequences, max_rows=3, window=20),
                               runtime.next_token_logits(sequences), atol=1e-5)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["logits"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save_model(helper.make_model(graph), str(path))
    before = path.read_bytes()
    assert add_last_logits_switch(path) is False and path.read_bytes() == before


def _head_matmuls(path: Path) -> int:
    """The LM heads behind the graph's outputs: MatMul/Gemm nodes that compute an output (through elementwise
    ops), counted once each."""
    import onnx

    from edgeval.converters.kv_export import _lm_head

    graph = onnx.load(str(path), load_external_data=False).graph
    heads = [_lm_head(graph, o.name) for o in graph.output if o.name in ("logits", "next_token_logits")]
    return len({h.name for h in heads if h is not None})


@pytest.fixture(scope="module")
def plain_next(tiny_llama_dir, tmp_path_factory) -> Path:
    from edgeval.converters.export import export_onnx

    return export_onnx(tiny_llama_dir, tmp_path_factory.mktemp("plain") / "model.onnx", legacy=True,
                       next_token_output=True)


def test_one_lm_head_and_next_logits_are_the_last_row(exports, plain_next):
    """next_token_logits is a slice of logits: one head in the graph (ORT runs every node, so a second head ran
    at every call for nothing), and the same numbers as the last row of the full logits."""
    for path in (exports["fused"], exports["unfused"], plain_next):
        assert _head_matmuls(path) == 1
    runtime = load_runtime(plain_next)
    assert runtime.last_switch and runtime.kv_seq_axes() is None
    sequences = [[5, 6, 7, 8, 9], [11, 12], [40, 41, 42]]
    nxt = runtime.next_token_logits(sequences)
    for row, seq in zip(nxt, sequences, strict=True):
        np.testing.assert_allclose(row, runtime.sequence_logits([seq])[0][-1], atol=1e-5, rtol=0)


def test_plain_next_token_pass_feeds_the_switch(plain_next):
    """Reading next_token_logits alone feeds the switch, so the head runs at the last position only: the
    logits output then has one position."""
    runtime = load_runtime(plain_next)
    assert runtime._use_switch()  # checked once per file (a probe of its own), before the spy counts the passes
    seen = []
    run = runtime.session.run

    def spy(names, feeds):
        seen.append(int(feeds.get("logits_last_only", [0])[0]))
        return run(names, feeds)

    runtime.session.run = spy
    runtime.next_token_logits([[5, 6, 7]])
    runtime.sequence_logits([[5, 6, 7]])
    assert seen == [1, 0]
    runtime.batch_invariant = False  # a dynamically quantized head: its scale comes from the rows it runs on,
    runtime.next_token_logits([[5, 6, 7]])  # so the next token's row is cut from the whole head's output
    assert seen == [1, 0, 0]
    ids, mask = np.array([[5, 6, 7]]), np.ones((1, 3), np.int64)
    feeds = runtime._feeds(ids, mask) | {"logits_last_only": np.ones(1, np.int64)}
    assert run(["logits"], feeds)[0].shape[1] == 1


def test_a_switch_that_changes_the_logits_is_not_used(plain_next, tmp_path):
    """The switch is the file's claim: a graph where feeding it changes the next-token logits (here it adds 1)
    is run without it, and its next-token logits are still the last row of the full logits."""
    import shutil

    import onnx
    from onnx import helper

    model = onnx.load(str(plain_next))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["/lie/next" if o == "next_token_logits" else o for o in node.output]
    graph.node.extend([helper.make_node("Cast", ["logits_last_only"], ["/lie/f"], to=onnx.TensorProto.FLOAT),
                       helper.make_node("Add", ["/lie/next", "/lie/f"], ["next_token_logits"])])
    folder = tmp_path / "lie"
    folder.mkdir()
    for f in plain_next.parent.glob("tokenizer*"):
        shutil.copy(f, folder)
    onnx.save(model, str(folder / "model.onnx"))
    runtime = load_runtime(folder / "model.onnx")
    assert runtime.last_switch and not runtime._use_switch()
    assert runtime.describe()["last_logits_switch"] is False
    nxt = runtime.next_token_logits([[5, 6, 7, 8]])[0]
    np.testing.assert_allclose(nxt, runtime.sequence_logits([[5, 6, 7, 8]])[0][-1], atol=1e-5, rtol=0)
