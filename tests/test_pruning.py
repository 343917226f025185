"""Pruning: discovery, masks, per-layer sparsity, N:M, seeds, include/exclude, the pruned directory, bad inputs.

Wanda's scores, its sequential calibration and the calibration corpus are tested in ``test_wanda.py``.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tinymodels import tiny_model  # noqa: E402

from edgeval.converters.pruning import (  # noqa: E402
    Calibration,
    SparsityWarning,
    find_layers,
    nm_mask,
    prune_directory,
    prune_model,
    unstructured_mask,
)
from edgeval.errors import BadInputError, DataError, ModelError, UsageError  # noqa: E402

LLAMA_LINEARS = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
GPT2_LINEARS = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}


def calib(n: int = 4, seq: int = 32, seed: int = 0) -> Calibration:
    generator = torch.Generator().manual_seed(seed)
    return Calibration.from_ids(torch.randint(0, 1000, (n, seq), generator=generator))


def out_in(module) -> "torch.Tensor":
    """A linear's weight as (out, in), written out here rather than taken from the package."""
    from transformers.pytorch_utils import Conv1D

    return module.weight.detach().t() if isinstance(module, Conv1D) else module.weight.detach()


def block_linears(model) -> dict[str, "torch.nn.Module"]:
    """Every nn.Linear / Conv1D inside the decoder blocks, found by name rather than by the package."""
    from transformers.pytorch_utils import Conv1D

    return {name: m for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D)) and (".layers." in name or ".h." in name)}


def untouched_state(model) -> dict[str, bytes]:
    """Bytes of every parameter that is not a block linear weight (embeddings, lm_head, norms, biases)."""
    linear_weights = {f"{name}.weight" for name in block_linears(model)}
    return {name: p.detach().numpy().tobytes() for name, p in model.named_parameters() if name not in linear_weights}


# --- every method, every layer, both architectures ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("method", ["random", "magnitude", "wanda"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_every_block_linear_hits_the_requested_sparsity(kind, method, sparsity):
    model = tiny_model(kind)
    before = untouched_state(model)
    result = prune_model(model, method, sparsity, calibration=calib())
    linears = block_linears(model)
    assert {name.split(".", 3)[-1] for name in linears} == (LLAMA_LINEARS if kind == "llama" else GPT2_LINEARS)
    assert set(result.manifest["layers"]) == set(linears)  # o_proj/down_proj and both GPT-2 c_proj included
    for name, module in linears.items():
        measured = float((module.weight == 0).float().mean())
        assert abs(measured - sparsity) <= 0.005, (name, measured)
        assert result.manifest["layers"][name]["measured_sparsity"] == pytest.approx(measured)
    assert untouched_state(model) == before  # embeddings, lm_head, norms, biases: same bytes
    assert result.manifest["warnings"] == []


def test_no_linears_and_no_blocks_are_model_errors():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(4)

    class Model(torch.nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.layers = torch.nn.ModuleList(Block() for _ in range(blocks))

    with pytest.raises(ModelError, match="no prunable linear layers") as info:
        prune_model(Model(2), "magnitude", 0.5)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="no list of identical decoder blocks"):
        find_layers(Model(0))


@pytest.mark.parametrize("arch", ["qwen2", "phi3", "gemma3"])
def test_discovery_on_other_architectures(arch):
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, Phi3Config, Qwen2Config

    common = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = {"qwen2": lambda: Qwen2Config(**common),
              "phi3": lambda: Phi3Config(**common),
              "gemma3": lambda: Gemma3TextConfig(**common, head_dim=16)}[arch]()
    model = AutoModelForCausalLM.from_config(config)
    expected = {"phi3": {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"}}
    layers = find_layers(model)
    assert {layer.local_name for layer in layers} == expected.get(arch, LLAMA_LINEARS)
    assert len(layers) == 2 * len(expected.get(arch, LLAMA_LINEARS))
    assert all(layer.name.startswith("model.layers.") for layer in layers)


# --- masks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_nm_mask_zeroes_exactly_n_of_every_m(n, m):
    scores = torch.rand(16, 64, generator=torch.Generator().manual_seed(1))
    keep = nm_mask(scores, n, m)
    groups_keep, groups_scores = keep.reshape(16, -1, m), scores.reshape(16, -1, m)
    assert ((~groups_keep).sum(dim=-1) == n).all()
    # the zeroed ones are the n lowest of their group
    pruned_max = groups_scores.masked_fill(groups_keep, -1).amax(-1)
    kept_min = groups_scores.masked_fill(~groups_keep, 2).amin(-1)
    assert (pruned_max < kept_min).all()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("method,pattern", [("magnitude", "2:4"), ("wanda", "4:8"), ("random", "2:4")])
def test_nm_pattern_on_models(kind, method, pattern):
    n, m = map(int, pattern.split(":"))
    model = tiny_model(kind)
    result = prune_model(model, method, pattern=pattern, calibration=calib())
    assert result.manifest["pattern"] == pattern and result.manifest["requested_sparsity"] == n / m
    for module in block_linears(model).values():
        weight = out_in(module)
        zeros_per_group = (weight.reshape(weight.shape[0], -1, m) == 0).sum(dim=-1)
        assert (zeros_per_group == n).all()


def test_unstructured_counts_are_exact():
    scores = torch.rand(10, 100, generator=torch.Generator().manual_seed(2))
    assert int((~unstructured_mask(scores, 0.29, per_row=True)).sum(dim=1).unique()) == 29
    assert int((~unstructured_mask(scores, 0.333, per_row=False)).sum()) == 333
    ties = torch.ones(4, 8)
    assert int((~unstructured_mask(ties, 0.5, per_row=True)).sum()) == 16  # ties cannot change the count


def test_per_row_is_per_row_and_default_per_matrix_is_not():
    model = tiny_model("llama")
    prune_model(model, "magnitude", 0.5, per_row=True)
    q = model.model.layers[0].self_attn.q_proj.weight
    assert ((q == 0).sum(dim=1) == 32).all()
    model = tiny_model("llama")
    prune_model(model, "magnitude", 0.5)
    q = model.model.layers[0].self_attn.q_proj.weight
    assert int((q == 0).sum()) == q.numel() // 2 and len((q == 0).sum(dim=1).unique()) > 1


def test_magnitude_zeroes_the_smallest_weights():
    model = tiny_model("llama")
    original = model.model.layers[1].mlp.down_proj.weight.detach().clone()
    prune_model(model, "magnitude", 0.3)
    pruned = model.model.layers[1].mlp.down_proj.weight
    assert original.abs()[pruned == 0].max() <= original.abs()[pruned != 0].min()


# --- seeds, include/exclude, warnings, progress -------------------------------------------------------------

def masks_of(model) -> dict[str, "torch.Tensor"]:
    return {name: module.weight != 0 for name, module in block_linears(model).items()}


def test_random_is_reproducible_by_seed_and_differs_across_seeds():
    runs = {}
    for label, seed in (("a", 7), ("b", 7), ("c", 8)):
        model = tiny_model("llama")
        prune_model(model, "random", 0.5, seed=seed)
        runs[label] = masks_of(model)
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert all(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_random_layer_mask_does_not_depend_on_other_layers():
    full, partial = tiny_model("llama"), tiny_model("llama")
    prune_model(full, "random", 0.5, seed=3)
    prune_model(partial, "random", 0.5, seed=3, include=["*down_proj"])
    name = "model.layers.1.mlp.down_proj"
    assert torch.equal(masks_of(full)[name], masks_of(partial)[name])


@pytest.mark.parametrize("include,exclude,expected", [
    (["mlp.*"], None, {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}),
    (None, ["*q_proj", "*k_proj", "*v_proj"], {"self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}),
    ("re:(o|down)_proj$", None, {"self_attn.o_proj", "mlp.down_proj"}),
])
def test_include_exclude(include, exclude, expected):
    model = tiny_model("llama")
    result = prune_model(model, "magnitude", 0.5, include=include, exclude=exclude)
    for name, module in block_linears(model).items():
        local = name.split(".", 3)[-1]
        assert (name in result.manifest["layers"]) == (local in expected)
        assert bool((module.weight == 0).any()) == (local in expected)


def test_exclude_a_whole_block_by_full_name():
    model = tiny_model("llama")
    result = prune_model(model, "wanda", 0.5, exclude=["model.layers.0.*"], calibration=calib())
    assert all(name.startswith("model.layers.1.") for name in result.manifest["layers"])
    assert not any(bool((m.weight == 0).any()) for n, m in block_linears(model).items() if ".layers.0." in n)


def test_off_target_layers_warn_loudly():
    model = tiny_model("llama")
    with pytest.warns(SparsityWarning, match="differs from requested"):
        result = prune_model(model, "magnitude", 0.35, per_row=True)  # 22/64 = 44/128 = .34375: -0.625 points
    assert len(result.warnings) == 14 and all("-0.62 points" in line for line in result.warnings)


def test_progress_is_reported():
    calls = []
    prune_model(tiny_model("llama"), "wanda", 0.5, calibration=calib(), progress=lambda *a: calls.append(a))
    assert calls == [(1, 2, "block 0"), (2, 2, "block 1")]
    calls.clear()
    prune_model(tiny_model("gpt2"), "magnitude", 0.5, progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(i, 8) for i in range(1, 9)]


# --- bad inputs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(method="wandaa", sparsity=0.5), BadInputError, "did you mean 'wanda'"),
    (dict(method="magnitude", sparsity=0.0), BadInputError, "strictly between 0 and 1"),
    (dict(method="magnitude", sparsity=1.0), BadInputError, "strictly between 0 and 1"),
    (dict(method="magnitude", sparsity=-0.2), BadInputError, "strictly between 0 and 1"),
    (dict(method="magnitude", sparsity=float("nan")), BadInputError, "strictly between 0 and 1"),
    (dict(method="magnitude", sparsity="half"), BadInputError, "strictly between 0 and 1"),
    (dict(method="magnitude", sparsity=None), BadInputError, "strictly between 0 and 1"),
    (dict(method="magnitude", pattern="4:2"), BadInputError, "0 < N < M"),
    (dict(method="magnitude", pattern="2:2"), BadInputError, "0 < N < M"),
    (dict(method="magnitude", pattern="0:4"), BadInputError, "0 < N < M"),
    (dict(method="magnitude", pattern="-1:4"), BadInputError, "0 < N < M"),
    (dict(method="magnitude", pattern="blocky"), BadInputError, "'unstructured' or 'N:M'"),
    (dict(method="magnitude", pattern="2:4", sparsity=0.3), BadInputError, "implies sparsity 0.5"),
    (dict(method="magnitude", pattern="2:3"), BadInputError, "divisible by 3"),
    (dict(method="wanda", sparsity=0.5, n_samples=0), BadInputError, "n_samples must be a positive integer"),
    (dict(method="wanda", sparsity=0.5, calibration=Calibration.from_ids(torch.zeros(1, 600, dtype=torch.long))),
     BadInputError, "seq_len=600 exceeds the model's 512 positions"),
    (dict(method="magnitude", sparsity=0.5, include=["*nothing*"]), BadInputError, "leave no layer to prune"),
    (dict(method="magnitude", sparsity=0.5, exclude=["re:("]), BadInputError, "not a valid regular expression"),
    (dict(method="wanda", sparsity=0.5), UsageError, "wanda needs calibration tokens"),
])
def test_bad_inputs_raise_one_line_errors(kwargs, error, match):
    model = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=match) as info:
        prune_model(model, **kwargs)
    assert "\n" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was touched


def test_bad_calibration_files_are_data_errors(tmp_path):
    from tinymodels import build_tokenizer

    tokenizer = build_tokenizer(tmp_path / "tok")
    empty, missing = tmp_path / "empty.txt", tmp_path / "missing.txt"
    empty.write_text("  \n")
    for path, match in ((empty, "empty"), (missing, "cannot read")):
        with pytest.raises(DataError, match=match) as info:
            prune_model(tiny_model("llama"), "wanda", 0.5, calibration=path, tokenizer=tokenizer)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_model_dir_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such file") as info:
        prune_directory(tmp_path / "nope", tmp_path / "out", "magnitude", 0.5)
    assert str(tmp_path / "nope") in str(info.value)


# --- the pruned directory -------------------------------------------------------------------------------------

def test_prune_directory_writes_a_loadable_model(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgeval.converters.manifest import prune_record, read_manifest

    out = tmp_path / "pruned"
    result = prune_directory(tiny_llama_dir, out, "wanda", 0.5, n_samples=4, seq_len=64, seed=1)
    assert result.out_dir == out and {"model.safetensors", "config.json", "tokenizer.json", "compression.json"} <= {
        p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    doc = read_manifest(out)
    assert doc["chain"] == ["wanda"] and doc["source"]["format"] == "hf" and doc["output"]["format"] == "hf"
    manifest = result.manifest
    assert prune_record(doc)["measured_sparsity"] == manifest["measured_sparsity"]
    assert prune_record(doc)["layers"] == manifest["layers"]
    assert manifest["method"] == "wanda" and manifest["seed"] == 1 and manifest["elapsed_s"] >= 0
    assert manifest["calibration"]["n_samples"] == 4 and manifest["calibration"]["seq_len"] == 64
    assert len(manifest["calibration"]["sha256"]) == 64 and manifest["edgeval_version"]
    assert manifest["source"]["format"] == "hf" and len(manifest["layers_included"]) == 14
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    original = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    for name, module in block_linears(reloaded).items():
        zeros = int((module.weight == 0).sum())
        assert zeros == manifest["layers"][name]["zeros"]
        assert zeros / module.weight.numel() == pytest.approx(manifest["layers"][name]["measured_sparsity"])
    assert torch.equal(reloaded.model.embed_tokens.weight, original.model.embed_tokens.weight)
    assert torch.equal(reloaded.lm_head.weight, original.lm_head.weight)
    assert AutoTokenizer.from_pretrained(out)("the dog").input_ids


def test_prune_directory_gpt2_and_overwrite(tiny_gpt2_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from edgeval.converters.manifest import prune_record, read_manifest

    out = tmp_path / "pruned"
    prune_directory(tiny_gpt2_dir, out, "magnitude", pattern="2:4")
    with pytest.raises(UsageError, match="not empty"):
        prune_directory(tiny_gpt2_dir, out, "random", 0.3)
    result = prune_directory(tiny_gpt2_dir, out, "random", 0.3, overwrite=True)
    assert prune_record(read_manifest(out))["method"] == "random"
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    measured = [float((m.weight == 0).float().mean()) for m in block_linears(reloaded).values()]
    assert measured == pytest.approx([result.manifest["layers"][n]["measured_sparsity"]
                                      for n in block_linears(reloaded)])
    assert all(abs(s - 0.3) <= 0.005 for s in measured)


def test_prune_directory_from_gguf(tiny_llama_gguf, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "from-gguf"
    result = prune_directory(tiny_llama_gguf, out, "wanda", 0.5, n_samples=2, seq_len=32)
    assert result.manifest["source"]["format"] == "gguf" and (out / "tokenizer.json").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    for name, module in block_linears(reloaded).items():
        assert int((module.weight == 0).sum()) == result.manifest["layers"][name]["zeros"]


def test_prune_directory_checks_options_before_loading(tmp_path):
    with pytest.raises(UsageError, match="unknown pruning option.*n_sample"):
        prune_directory(tmp_path / "not-loaded", tmp_path / "out", "wanda", 0.5, n_sample=4)
    with pytest.raises(BadInputError, match="did you mean 'random'"):
        prune_directory(tmp_path / "not-loaded", tmp_path / "out", "randon", 0.5)


def test_prune_cli_reports_calibration_tokens_used_and_warns_on_a_shortfall(tiny_llama_dir, tmp_path, capsys):
    from edgeval.cli import main
    from edgeval.converters.manifest import prune_record, read_manifest

    with pytest.raises(SystemExit) as info:
        main(["prune", str(tiny_llama_dir), "--method", "wanda", "--sparsity", "0.5", "--calibration-samples", "128",
              "--seq-len", "256", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    manifest = prune_record(read_manifest(tmp_path / "out"))
    calib = manifest["calibration"]
    assert info.value.code == 0 and calib["requested_tokens"] == 128 * 256
    assert 0 < calib["distinct_tokens"] <= calib["corpus_tokens"] < 128 * 256  # the shipped text is too short
    assert f"calibration: {calib['distinct_tokens']:,} distinct tokens used of 32,768 requested" in out
    assert manifest["warnings"][0] == calib["warning"] and f"WARNING: {calib['warning']}" in err
