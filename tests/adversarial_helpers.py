"""Hand-built bad inputs for tests/test_adversarial.py: tiny ONNX graphs (built in milliseconds with onnx.helper,
no torch), broken tokenizers, and the one assertion every case makes (:func:`assert_refused`).

A crafted model is ``logits = Gather(E, input_ids)``: a "language model" whose next-token logits depend on the last
token only. Good enough to be scored (latency, BBQ) and easy to break in one precise way at a time.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
VOCAB = 1000


def copy_tokenizer(source_dir: Path, target_dir: Path) -> Path:
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, target_dir / name)
    return target_dir


def craft_onnx(path: Path, *, rows: int = VOCAB, width: int = VOCAB, declared_width: int | str | None = None,  # noqa: PLR0913
               out_name: str = "logits", out_type: str = "float", rank: int = 3, fill: float | None = None,
               ids_type: str = "int64", extra_first_output: tuple[str, int] | None = None, seed: int = 0) -> Path:
    """Write a Gather-based ONNX LM. ``rows``: embedding rows (ids it accepts); ``width``: logits columns;
    ``declared_width``: what the graph declares (default: ``width``); ``rank`` 2 gives (batch, width) by a mean
    over positions; ``fill`` sets every weight (NaN, inf); ``extra_first_output``: (name, width) of a hidden-state
    output listed before the logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((rows, width)).astype(np.float32)
    if fill is not None:
        weights[:] = fill
    inits = [numpy_helper.from_array(weights, "E")]
    ids_proto = {"int64": TensorProto.INT64, "float": TensorProto.FLOAT}[ids_type]
    inputs = [helper.make_tensor_value_info("input_ids", ids_proto, ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])]
    nodes, outputs = [], []
    ids = "input_ids"
    if ids_type != "int64":
        nodes.append(helper.make_node("Cast", ["input_ids"], ["ids64"], to=TensorProto.INT64))
        ids = "ids64"
    nodes.append(helper.make_node("Gather", ["E", ids], ["gathered"]))
    last = "gathered"
    if extra_first_output is not None:
        name, hidden = extra_first_output
        inits.append(numpy_helper.from_array(rng.standard_normal((width, hidden)).astype(np.float32), "H"))
        nodes.append(helper.make_node("MatMul", ["gathered", "H"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "sequence", hidden]))
    if rank == 2:
        nodes.append(helper.make_node("ReduceMean", ["gathered"], ["pooled"], axes=[1], keepdims=0))
        last = "pooled"
    elif rank == 4:
        nodes.append(helper.make_node("Unsqueeze", ["gathered", "axes"], ["lifted"]))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
        last = "lifted"
    if out_type == "int64":
        nodes.append(helper.make_node("Cast", [last], [out_name], to=TensorProto.INT64))
    else:
        nodes.append(helper.make_node("Identity", [last], [out_name]))
    dim = width if declared_width is None else declared_width
    shape = {2: ["batch", dim], 3: ["batch", "sequence", dim], 4: ["batch", 1, "sequence", dim]}[rank]
    elem = TensorProto.INT64 if out_type == "int64" else TensorProto.FLOAT
    outputs.append(helper.make_tensor_value_info(out_name, elem, shape))
    graph = helper.make_graph(nodes, "crafted", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def move_weights_to(path: Path, location: str, data_file: Path) -> Path:
    """Rewrite the crafted model at ``path`` so that its weights live in ``data_file``, referenced as
    ``location`` (which may point anywhere: that is the point)."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(path))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="tmp.data", size_threshold=0)
    onnx.save_model(model, str(path))
    data_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path.parent / "tmp.data"), data_file)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))
    return path


def word_level_tokenizer(directory: Path, words: list[str], *, template: str | None = None,
                         extra_ids: int = 0) -> Path:
    """A WordLevel ``tokenizer.json`` with ``<unk>``, ``<pad>`` and ``words`` (plus ``extra_ids`` filler tokens):
    any word not listed encodes to ``<unk>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<pad>": 1}
    for word in [*words, *(f"filler{i}" for i in range(extra_ids))]:
        vocab.setdefault(word, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tk.save(str(directory / "tokenizer.json"))
    config: dict[str, Any] = {"pad_token": "<pad>", "unk_token": "<unk>"}
    if template is not None:
        config["chat_template"] = template
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def with_template(source_dir: Path, target_dir: Path, template: str, jinja_file: bool = False) -> Path:
    """A copy of the tokenizer in ``source_dir`` whose chat template is ``template``."""
    copy_tokenizer(source_dir, target_dir)
    (target_dir / "chat_template.jinja").unlink(missing_ok=True)
    if jinja_file:
        (target_dir / "chat_template.jinja").write_text(template)
        return target_dir
    config_path = target_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config["chat_template"] = template
    config_path.write_text(json.dumps(config))
    return target_dir


def assert_refused(code: int, err: str, expected_code: int | tuple[int, ...], *, report: Path | None = None,
                   bless: Path | None = None, needle: str | None = None) -> None:
    """The corpus's one assertion: the exit code, exactly one message line on stderr (naming ``needle``), no
    traceback, and never a written pass (no report with verdict pass, no BLESSED)."""
    expected = expected_code if isinstance(expected_code, tuple) else (expected_code,)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in expected, f"exit {code}, expected {expected}; stderr: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("edgeval: "), f"not one message line: {err!r}"
    if needle is not None:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    if report is not None and report.is_file():
        doc = json.loads(report.read_text())
        assert doc["verdict"] != "pass" and doc["exit_code"] == code, (doc["verdict"], doc["exit_code"], code)
    if bless is not None and bless.is_dir():
        assert not (bless / "BLESSED").exists()
