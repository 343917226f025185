"""Bounded user code (chat templates), answer-letter tokens and the tokenizer-size check of the runtimes."""
from __future__ import annotations

import math
import time

import pytest

from edgeval.errors import TokenizerError
from edgeval.runtimes.tokenizer import TransformersTokenizer, render_chat_template

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
USER = [{"role": "user", "content": "hi"}]


def test_an_ordinary_template_renders_as_before():
    out = render_chat_template(CHATML, USER, True)
    assert out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    started = time.perf_counter()
    for _ in range(500):
        render_chat_template(CHATML, USER, True)
    assert time.perf_counter() - started < 2.0  # compiled once: the bound costs next to nothing per prompt


def test_time_bound_names_the_file_and_the_thread_survives(monkeypatch):
    import edgeval.runtimes.tokenizer as module

    monkeypatch.setattr(module, "TEMPLATE_SECONDS", 0.2)
    slow = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    started = time.perf_counter()
    with pytest.raises(TokenizerError, match="time bound of 0.2 s") as info:
        render_chat_template(slow, USER, True, _source="/tok/tokenizer_config.json")
    assert time.perf_counter() - started < 2.0 and str(info.value).startswith("/tok/tokenizer_config.json: ")
    assert render_chat_template(CHATML, USER, True).endswith("assistant\n")  # nothing left pending in this thread
    time.sleep(0.3)  # and no late exception lands after the bound's deadline


def test_transformers_tokenizer_templates_are_bounded_too(monkeypatch):
    import edgeval.runtimes.tokenizer as module

    monkeypatch.setattr(module, "TEMPLATE_SECONDS", 0.2)

    class Spinning:
        chat_template = "x"
        eos_token_id = pad_token_id = 0

        def apply_chat_template(self, *args, **kwargs):
            while True:  # a template that never ends, rendered by transformers
                pass

    with pytest.raises(TokenizerError, match="time bound"):
        TransformersTokenizer(Spinning(), source="/m").apply_chat_template(USER)


def test_letters_of_a_real_tokenizer_are_distinct_and_decode_to_themselves(tiny_llama_dir):
    from edgeval.logprobs import letter_token_ids
    from edgeval.runtimes.tokenizer import FastTokenizer

    tokenizer = FastTokenizer(tiny_llama_dir)
    ids = letter_token_ids(tokenizer)
    assert len(ids) == 3 and all(ids) and len(set().union(*map(set, ids))) == sum(map(len, ids))  # distinct
    for letter, group in zip("ABC", ids, strict=True):
        assert all(tokenizer.decode([i]).strip() == letter for i in group)


def test_letters_sharing_a_token_are_refused():
    from edgeval.logprobs import letter_token_ids

    class Collapsing:
        source = "/tok"

        def encode(self, text, add_special_tokens=True):
            return [7] if text.strip() in "ABC" else [1, 2]

    with pytest.raises(TokenizerError, match="share token"):
        letter_token_ids(Collapsing())


def test_hand_built_nan_policy_is_an_error_report_through_the_api(tiny_llama_onnx):
    import edgeval
    from edgeval.policy import DEFAULTS, Policy

    data = {**DEFAULTS, "size": {**DEFAULTS["size"], "max_ratio_to_baseline": math.nan}}
    report = edgeval.check(tiny_llama_onnx, tiny_llama_onnx, Policy(data=data, source="<hand>"),
                           validators=["size"])
    assert report.verdict == "error" and report.exit_code == 3
    assert "size.max_ratio_to_baseline" in report.errors[0].message
