"""The GGUF's own tokenizer, run by llama.cpp: what the llama.cpp runtime encodes prompts with.

The vocabulary, merges, pre-tokenizer, BOS/EOS rules and chat template all come from the GGUF's metadata, read by
llama.cpp (``llama_tokenize`` / ``llama_token_to_piece``), so prompts are encoded as llama.cpp encodes them on the
device. Special-token text in a prompt (``<|im_start|>`` rendered by a chat template) is parsed as the special
token, as Hugging Face tokenizers parse added tokens. The chat template is rendered by edgeval's bounded sandbox
(:func:`~edgeval.runtimes.tokenizer.render_chat_template`), like every other tokenizer's.
"""
from __future__ import annotations

import hashlib
from typing import Any

from ..errors import TokenizerError
from .tokenizer import Tokenizer, render_chat_template


class LlamaCppTokenizer(Tokenizer):
    """The tokenizer interface over a loaded ``llama_cpp.Llama`` (its vocabulary is the GGUF's)."""

    def __init__(self, llm: Any, source: str):
        self._llm = llm
        self.source = source
        self.chat_template = llm.metadata.get("tokenizer.chat_template") or None
        self.eos_id = self._special("eos")
        pad = _int(llm.metadata.get("tokenizer.ggml.padding_token_id"))
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self._vocab: dict[str, int] | None = None

    def _special(self, which: str) -> int | None:
        """The id of the BOS or EOS token (llama.cpp reports -1 for none)."""
        tid = self._llm.token_bos() if which == "bos" else self._llm.token_eos()
        return tid if tid is not None and tid >= 0 else None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``; ``add_special_tokens``: BOS/EOS as the GGUF says (``tokenizer.ggml.add_bos_token``)."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def decode(self, ids: list[int]) -> str:
        return self._llm.detokenize(list(ids), special=True).decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary entry (its stored text, e.g. ``ĠA`` in a byte-level BPE)."""
        if self._vocab is None:
            model = self._llm._model  # llama_cpp's model wrapper: token_get_text reads the vocabulary entry
            self._vocab = {model.token_get_text(i): i for i in range(self._llm.n_vocab())}
        return self._vocab.get(token)

    def special_id(self, which: str) -> int | None:
        return self._special(which)

    def _text_of(self, tid: int | None) -> str:
        return "" if tid is None else self._llm._model.token_get_text(tid)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise TokenizerError("the GGUF has no chat template (tokenizer.chat_template)", path=self.source)
        return render_chat_template(self.chat_template, messages, add_generation_prompt, _source=self.source,
                                    bos_token=self._text_of(self._special("bos")),
                                    eos_token=self._text_of(self.eos_id))

    def fingerprint(self) -> dict[str, Any]:
        """sha256 over what decides the ids: the tokenizer metadata llama.cpp reads (model, pre-tokenizer,
        special ids, BOS/EOS flags, chat template) and every vocabulary entry's text and attributes."""
        digest = hashlib.sha256()
        for key in sorted(k for k in self._llm.metadata if k.startswith("tokenizer.")):
            digest.update(f"{key}={self._llm.metadata[key]}\0".encode())
        model = self._llm._model
        for tid in range(self._llm.n_vocab()):
            digest.update(f"{model.token_get_text(tid)}\0{model.token_get_attr(tid)}\0".encode())
        return {"sha256": digest.hexdigest(), "of": "GGUF tokenizer metadata and vocabulary (llama.cpp)"}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
