"""The perplexity screen (edgeval.search.screen) on a tiny Llama trained on the perplexity text, so that its
perplexity gate fails above some sparsity: the forecast matches the gate, the design gates the forecast boundary
first, the answers equal plain bisection's, the forecast is cached and a tampered cache is not believed."""
from __future__ import annotations

import json

import pytest

from edgeval.policy import Policy
from edgeval.search.screen import NAME, why_not
from edgeval.search.space import build_space

POLICY = {"validators": ["size", "perplexity"], "perplexity": {"max_tokens": 256, "max_ratio_to_baseline": 1.5}}
SPARSITY = (0.1, 0.9, 0.1)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    from tinymodels import save_trained_model

    return save_trained_model(tmp_path_factory.mktemp("trained") / "model", steps=150)


def run(model, out, messages=None, **kwargs):
    from edgeval import search

    options = {"methods": ("magnitude",), "sparsity": SPARSITY, "policy": Policy.from_dict(POLICY), "workers": 1,
               "progress": None if messages is None else messages.append, **kwargs}
    return search(model, out, **options)


@pytest.fixture(scope="module")
def screened(trained_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("screened") / "out"
    return run(trained_dir, out), run(trained_dir, tmp_path_factory.mktemp("plain") / "out", screen=False)


def test_the_screen_forecasts_the_gate_and_its_boundary_is_gated_first(screened):
    with_screen, plain = screened
    entry = with_screen.document["screen"][0]
    assert entry["applied"] and entry["reason"] is None and entry["hint"] is not None
    hint = entry["hint"]
    forecast = {p["index"]: p for p in entry["points"]}
    assert forecast[hint]["forecast"] == "fail" and forecast[hint]["ratio"] > 1.5
    steps = [d["index"] for d in with_screen.document["decisions"]]
    assert steps == [hint - 1, hint]  # the highest point forecast to pass, then the boundary: nothing else
    assert with_screen.highest_passing == plain.highest_passing  # the same answer as plain bisection
    assert len(with_screen.points) < len(plain.points)
    assert entry["compared"] and all(abs(c["forecast_ratio"] / c["gated_ratio"] - 1) < 1e-4
                                     for c in entry["compared"])  # the forecast is the gate's own figure
    assert plain.document["screen"][0] == {**plain.document["screen"][0], "applied": False, "reason": "--no-screen"}
    assert with_screen.document["settings"]["screen"] is True


def test_the_forecast_is_cached_and_a_tampered_cache_is_recomputed(screened, trained_dir):
    with_screen, _ = screened
    messages: list[str] = []
    again = run(trained_dir, with_screen.out_dir, messages)
    assert not any(m.startswith("screening") for m in messages)  # the cached forecast was reused
    assert not any("building and gating" in m for m in messages)  # and so was every gated point
    assert again.document["screen"][0]["hint"] == with_screen.document["screen"][0]["hint"]
    cache = with_screen.out_dir / NAME
    doc = json.loads(cache.read_text())
    (entry,) = doc["axes"].values()
    entry["hint"] = 0  # a forecast that contradicts its own points
    cache.write_text(json.dumps(doc))
    messages.clear()
    redone = run(trained_dir, with_screen.out_dir, messages)
    assert any(m.startswith("screening") for m in messages)
    assert redone.document["screen"][0]["hint"] == with_screen.document["screen"][0]["hint"]


def test_a_resume_replays_the_order_the_search_began_with(screened, trained_dir):
    """The hint is kept in the journal: resumed with --no-screen (or a screen that now says otherwise), the search
    replays the same decisions and gates nothing again."""
    with_screen, _ = screened
    messages: list[str] = []
    again = run(trained_dir, with_screen.out_dir, messages, screen=False)
    assert not any("building and gating" in m for m in messages)
    assert again.document["decisions"] == with_screen.document["decisions"]
    assert any("resuming in the order the search began with" in m for m in messages)
    assert again.highest_passing == with_screen.highest_passing


def test_what_cannot_be_screened_says_why(tiny_llama_dir):
    space = build_space(["magnitude", "magnitude+int8", "int8"], (0.5, 0.6, 0.1))
    with_ppl, without = Policy.from_dict(POLICY), Policy.from_dict({"validators": ["size"]})
    reasons = {a.name: why_not(a, "hf", with_ppl) for a in space.axes}
    assert reasons["magnitude"] is None
    assert reasons["magnitude+int8"] is None and "single point" in reasons["int8"]  # a chain: its pruning step
    assert "no perplexity limit" in why_not(space.axes[0], "hf", without)
    unlimited = Policy.from_dict({**POLICY, "perplexity": {"max_ratio_to_baseline": None}})
    assert "no perplexity limit" in why_not(space.axes[0], "hf", unlimited)
    assert "onnx file" in why_not(space.axes[0], "onnx", with_ppl)


def test_grid_strategy_is_never_screened(trained_dir, tmp_path):
    result = run(trained_dir, tmp_path / "out", sparsity=(0.3, 0.4, 0.1), strategy="grid")
    assert [s["applied"] for s in result.document["screen"]] == [False]
    assert len(result.points) == 2


def _screen(trained_dir, out, **kwargs):
    from edgeval.artifacts import load_artifact
    from edgeval.search.screen import screen

    space = build_space(["magnitude"], SPARSITY)
    out.mkdir(parents=True, exist_ok=True)
    return screen(load_artifact(trained_dir), space, Policy.from_dict(POLICY), out, **kwargs)["magnitude"]


POINT = '{"index": 0, "sparsity": 0.1, "perplexity": PPL, "ratio": RATIO, "forecast": "FORECAST"}'


def _entry(ppl="30", ratio="1.0", forecast="pass", hint="null", elapsed="1.0"):
    point = POINT.replace("PPL", ppl).replace("RATIO", ratio).replace("FORECAST", forecast)
    return '{"edgeval": "VERSION", "axes": {"KEY": {"points": [' + point + '], "hint": ' + hint + \
        ', "elapsed_s": ' + elapsed + '}}}'


@pytest.mark.parametrize("cache", ['{"edgeval": "VERSION", "axes": []}', "not json", _entry(ppl='"x"'),
                                   _entry(ratio="3.0"),  # a forecast that does not follow from its own ratio
                                   _entry(elapsed="-5"), _entry(elapsed="1e999"), _entry(hint="true")])
def test_a_malformed_cache_is_recomputed_not_a_crash(trained_dir, tmp_path, cache):
    from edgeval._version import __version__
    from edgeval.artifacts import load_artifact
    from edgeval.search.screen import _key

    space = build_space(["magnitude"], SPARSITY)
    key = _key(load_artifact(trained_dir), space.axes[0], space.fixed, Policy.from_dict(POLICY))
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / NAME).write_text(cache.replace("VERSION", __version__).replace("KEY", key))
    messages: list[str] = []
    result = _screen(trained_dir, tmp_path, say=messages.append)
    assert result.applied and result.hint is not None and any(m.startswith("screening") for m in messages)
    assert key in json.loads((tmp_path / NAME).read_text())["axes"]  # the good forecast replaced the bad one


def test_a_chain_shares_its_pruning_steps_forecast(trained_dir, tmp_path):
    from edgeval.artifacts import load_artifact
    from edgeval.search.screen import screen

    space = build_space(["magnitude", "magnitude+int8"], SPARSITY)
    messages: list[str] = []
    out = screen(load_artifact(trained_dir), space, Policy.from_dict(POLICY), tmp_path, say=messages.append)
    assert out["magnitude"].applied and out["magnitude+int8"].applied
    assert out["magnitude+int8"].hint == out["magnitude"].hint is not None
    assert out["magnitude+int8"].points == out["magnitude"].points
    assert not any(m.startswith("magnitude+int8 @") for m in messages)  # probed once, for both


def test_without_the_memory_for_it_the_screen_steps_aside(trained_dir, tmp_path, monkeypatch):
    import importlib

    executors = importlib.import_module("edgeval.search.executors")  # edgeval.search is also a function's name
    monkeypatch.setattr(executors, "available_memory", lambda: 1)
    result = _screen(trained_dir, tmp_path)
    assert not result.applied and "not enough memory" in result.reason and not (tmp_path / NAME).exists()


def test_the_forecasts_key_changes_with_edgevals_code(trained_dir, monkeypatch):
    from edgeval import environment
    from edgeval.artifacts import load_artifact
    from edgeval.search.screen import _key

    space, policy = build_space(["magnitude"], SPARSITY), Policy.from_dict(POLICY)
    before = _key(load_artifact(trained_dir), space.axes[0], space.fixed, policy)
    monkeypatch.setattr(environment, "build_fingerprint", lambda: {"source": "another build"})
    assert _key(load_artifact(trained_dir), space.axes[0], space.fixed, policy) != before
