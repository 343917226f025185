"""Tokenizers without torch: ``tokenizer.json`` through the ``tokenizers`` library, chat templates through jinja2.

A tokenizer is found beside the model (``tokenizer.json`` + ``tokenizer_config.json`` in the model's directory) or
given explicitly (``--tokenizer DIR_OR_FILE``). The torch runtime wraps a transformers tokenizer in the same
interface (:class:`TransformersTokenizer`), so validators never care which one they hold.

Special tokens (BOS/EOS) are added the way the model was trained to read text, in ONE place:

- :meth:`Tokenizer.special_affixes` finds the ids the tokenizer adds around a text of its own accord (its
  post-processor in ``tokenizer.json``), overridden by ``add_bos_token`` / ``add_eos_token`` when
  ``tokenizer_config.json`` sets them explicitly (as llama.cpp and transformers 4's Llama/Gemma tokenizers do;
  transformers 5 ignores the keys when tokenizer.json exists, so files where the two disagree are inconsistent
  and edgeval follows the explicit flag). The same rule serves both tokenizer classes, so the ONNX runtime and
  the torch runtime encode alike (parity's ``tokenizer_agreement`` checks it).
- :meth:`Tokenizer.encode_prompt`: a prompt the model continues (BBQ, parity, calibration windows): the
  tokenizer's leading special tokens (BOS) exactly once, whether a chat template already rendered them or not
  (never both, never neither), and never a trailing EOS.
- :meth:`Tokenizer.encode_text`: running text (perplexity), as ``AutoTokenizer(...)(text)`` encodes it by default.
"""
from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import TokenizerError, require

#: bounds of a chat-template rendering (a template is user code): wall time per prompt, characters of output
TEMPLATE_SECONDS = 2.0
TEMPLATE_MAX_CHARS = 1_000_000


class Tokenizer:
    """Interface every tokenizer offers to validators."""

    source: str
    pad_id: int
    eos_id: int | None
    chat_template: str | None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        raise NotImplementedError

    def special_affixes(self) -> tuple[list[int], list[int]]:
        """``(prefix, suffix)``: the ids the tokenizer adds before and after a text by default (BOS, EOS ...)."""
        cached = self.__dict__.get("_affixes")
        if cached is None:
            prefix, suffix = _affixes(self, self.source)
            flags = self.config_flags()
            prefix = _with_flag(prefix, self.special_id("bos"), flags.get("add_bos_token"), at_start=True)
            suffix = _with_flag(suffix, self.special_id("eos"), flags.get("add_eos_token"), at_start=False)
            cached = self.__dict__["_affixes"] = (prefix, suffix)
        return cached

    def config_flags(self) -> dict[str, bool]:
        """``add_bos_token`` / ``add_eos_token`` when tokenizer_config.json sets them (booleans only)."""
        return {}

    def special_id(self, which: str) -> int | None:
        """The id of the ``bos`` or ``eos`` token, None when the tokenizer has none."""
        return None

    def encode_prompt(self, text: str) -> list[int]:
        """Ids of a prompt that the model continues: the tokenizer's leading special tokens exactly once, no EOS.

        A rendered chat template may already begin with the BOS text (it then encodes to the BOS id and is not
        added again, nor kept twice); plain text gets the BOS the tokenizer adds by default (none when it adds
        none)."""
        prefix, _ = self.special_affixes()
        ids = self.encode(text, add_special_tokens=False)
        if not prefix:
            return ids
        n = len(prefix)
        while ids[:2 * n] == prefix + prefix:  # a template (or text) that renders BOS twice: never both
            ids = ids[n:]
        return ids if ids[:n] == prefix else prefix + ids

    def encode_text(self, text: str) -> list[int]:
        """Running text (perplexity) as the tokenizer encodes it by default: BOS/EOS per its own settings."""
        prefix, suffix = self.special_affixes()
        return prefix + self.encode(text, add_special_tokens=False) + suffix

    def fingerprint(self) -> dict[str, Any]:
        """sha256 over what decides the ids: the tokenizer files (or the serialised tokenizer), so two runs can be
        compared; ``of`` says what was hashed."""
        return {"sha256": None, "of": "unknown"}


class FastTokenizer(Tokenizer):
    """``tokenizer.json`` (+ optional ``tokenizer_config.json`` / ``chat_template.jinja``) from a directory."""

    def __init__(self, directory: Path):
        tokenizers = require("tokenizers", "onnx", "reading tokenizer.json")
        self.source = str(directory)
        try:
            self._tk = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise TokenizerError(f"cannot load tokenizer.json: {exc}", path=directory / "tokenizer.json") from None
        self.directory = directory
        self.config = _read_json(directory / "tokenizer_config.json")
        self.chat_template = _chat_template(directory, self.config)
        self.bos_token = _token_text(self.config.get("bos_token"))
        self.eos_token = _token_text(self.config.get("eos_token"))
        self.eos_id = self._tk.token_to_id(self.eos_token) if self.eos_token else None
        pad = _token_text(self.config.get("pad_token"))
        pad_id = self._tk.token_to_id(pad) if pad else None
        self.pad_id = pad_id if pad_id is not None else (self.eos_id if self.eos_id is not None else 0)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tk.encode(text, add_special_tokens=add_special_tokens).ids

    def fingerprint(self) -> dict[str, Any]:
        return _files_fingerprint(self.directory)

    def config_flags(self) -> dict[str, bool]:
        return _flags(self.config)

    def special_id(self, which: str) -> int | None:
        token = self.bos_token if which == "bos" else self.eos_token
        return self._tk.token_to_id(token) if token else None

    def decode(self, ids: list[int]) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise TokenizerError("tokenizer has no chat template", path=self.source)
        return render_chat_template(self.chat_template, messages, add_generation_prompt,
                                    bos_token=self.bos_token or "", eos_token=self.eos_token or "",
                                    _source=template_file(self.source))


class TransformersTokenizer(Tokenizer):
    """Adapter of a ``transformers`` tokenizer (used by the torch runtime, e.g. for GGUF files)."""

    def __init__(self, hf_tokenizer: Any, source: str):
        self._tk = hf_tokenizer
        self.source = source
        self.chat_template = getattr(hf_tokenizer, "chat_template", None)
        self.eos_id = hf_tokenizer.eos_token_id
        pad = hf_tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tk(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self._tk.decode(list(ids))

    def token_to_id(self, token: str) -> int | None:
        tid = self._tk.convert_tokens_to_ids(token)
        return None if tid is None or tid == self._tk.unk_token_id and token != self._tk.unk_token else tid

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise TokenizerError("tokenizer has no chat template", path=self.source)
        where = template_file(self.source)
        with bounded_template(where):  # transformers renders it (sandboxed jinja2, but without a time bound)
            text = self._tk.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return check_template_output(text, where)

    def config_flags(self) -> dict[str, bool]:
        directory = self._directory()
        return _flags(_read_json(directory / "tokenizer_config.json")) if directory else {}

    def special_id(self, which: str) -> int | None:
        return self._tk.bos_token_id if which == "bos" else self._tk.eos_token_id

    def _directory(self) -> Path | None:
        if not self.source:
            return None
        source = Path(self.source)
        if source.is_dir():
            return source
        return source.parent if source.is_file() and source.suffix.lower() != ".gguf" else None

    def fingerprint(self) -> dict[str, Any]:
        directory = self._directory()
        if directory is not None:
            return _files_fingerprint(directory)
        backend = getattr(self._tk, "backend_tokenizer", None)  # GGUF: the converted tokenizer, not 1 GB of file
        if backend is None:
            return {"sha256": None, "of": "unknown"}
        body = backend.to_str() + "\n" + (self.chat_template or "")
        return {"sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(), "of": "tokenizers serialisation"}


def render_chat_template(template: str, messages: list[dict[str, str]], add_generation_prompt: bool,
                         _source: str | Path | None = None, **special: str) -> str:
    """Render a Hugging Face chat template in a sandboxed jinja2 environment (no file or attribute access),
    bounded like any user code: :data:`TEMPLATE_SECONDS` of time, :data:`TEMPLATE_MAX_CHARS` of output, no
    integer argument above that size (``'x' * 10**9``, ``center(10**9)``). Exceeding a bound, or a template
    that does not render, is a :class:`TokenizerError` (exit 3) naming ``_source`` (the template's file)."""
    jinja2 = require("jinja2", "onnx", "rendering chat templates")

    def raise_exception(message: str):
        raise TokenizerError(f"chat template refused the messages: {message}", path=_source)

    context = dict(messages=messages, add_generation_prompt=add_generation_prompt, raise_exception=raise_exception,
                   strftime_now=lambda fmt: datetime.now().strftime(fmt), **special)
    try:
        with bounded_template(_source):
            chunks, size = [], 0
            for chunk in _compiled_template(template).generate(**context):
                size += len(chunk)
                if size > TEMPLATE_MAX_CHARS:
                    raise TokenizerError(f"chat template output exceeds {TEMPLATE_MAX_CHARS:,} characters",
                                         path=_source)
                chunks.append(chunk)
    except jinja2.TemplateError as exc:
        raise TokenizerError(f"chat template does not render: {exc}", path=_source) from None
    except TokenizerError as exc:
        if exc.path is None:  # a bound hit inside the sandbox: name the template's file
            raise TokenizerError(exc.detail, path=_source) from None
        raise
    return "".join(chunks)


@functools.lru_cache(maxsize=8)
def _compiled_template(template: str) -> Any:
    """The template compiled once (per text) in the bounded sandbox."""
    from .template_bounds import bounded_sandbox

    env = bounded_sandbox(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.bound_filters()
    return env.from_string(template)


def template_file(source: str | Path | None) -> str | None:
    """The file a tokenizer's chat template comes from: ``chat_template.jinja`` or ``tokenizer_config.json``."""
    if source is None:
        return None
    folder = Path(source)
    if not folder.is_dir():
        return str(source)
    jinja_file = folder / "chat_template.jinja"
    return str(jinja_file if jinja_file.is_file() else folder / "tokenizer_config.json")


def bounded_template(source: str | Path | None):
    """Context manager: the block (a template rendering) is stopped after :data:`TEMPLATE_SECONDS`."""
    from .template_bounds import time_bound

    return time_bound(TEMPLATE_SECONDS, source)


def check_template_output(text: str, source: str | Path | None) -> str:
    if len(text) > TEMPLATE_MAX_CHARS:
        raise TokenizerError(f"chat template output exceeds {TEMPLATE_MAX_CHARS:,} characters", path=source)
    return text


def find_tokenizer(model_path: Path, explicit: str | Path | None = None) -> FastTokenizer:
    """The tokenizer given with ``--tokenizer`` (file or directory), else the one beside the model."""
    if explicit is not None:
        explicit = Path(explicit)
        directory = explicit.parent if explicit.is_file() else explicit
        if not (directory / "tokenizer.json").is_file():
            raise TokenizerError("no tokenizer.json there", path=explicit)
        return FastTokenizer(directory)
    directory = model_path if model_path.is_dir() else model_path.parent
    if not (directory / "tokenizer.json").is_file():
        raise TokenizerError(f"no tokenizer.json beside the model (looked in {directory}); "
                             "pass --tokenizer PATH", path=model_path)
    return FastTokenizer(directory)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"not valid JSON: {exc}", path=path) from None
    return data if isinstance(data, dict) else {}


def _chat_template(directory: Path, config: dict[str, Any]) -> str | None:
    jinja_file = directory / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: take "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def _token_text(token: Any) -> str | None:
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


#: files whose bytes decide how a text becomes ids (hashed for the tokenizer fingerprint when present)
FINGERPRINT_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                     "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt")
_PROBE = "Context: probe text 42.\nAnswer:"


def _affixes(tokenizer: Tokenizer, source: Any) -> tuple[list[int], list[int]]:
    """Locate the plain encoding of a probe inside the default one: what is before and after it was added."""
    plain = tokenizer.encode(_PROBE, add_special_tokens=False)
    full = tokenizer.encode(_PROBE, add_special_tokens=True)
    n = len(plain)
    if not n:
        raise TokenizerError("the tokenizer encodes a probe text to no tokens", path=source)
    for start in range(len(full) - n + 1):
        if full[start:start + n] == plain:
            return list(full[:start]), list(full[start + n:])
    raise TokenizerError("cannot tell which special tokens the tokenizer adds (its default encoding does not "
                         "contain the plain one)", path=source)


def _files_fingerprint(directory: Path) -> dict[str, Any]:
    digest, names = hashlib.sha256(), []
    for name in FINGERPRINT_FILES:
        file = directory / name
        if file.is_file():
            names.append(name)
            digest.update(f"{name}\0".encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return {"sha256": digest.hexdigest() if names else None, "of": ", ".join(names) or "no tokenizer files"}


def _flags(config: dict[str, Any]) -> dict[str, bool]:
    return {k: config[k] for k in ("add_bos_token", "add_eos_token") if isinstance(config.get(k), bool)}


def _with_flag(ids: list[int], token_id: int | None, flag: bool | None, at_start: bool) -> list[int]:
    """Affix ``ids`` with ``token_id`` forced in (flag true) or out (flag false); unchanged when flag is None."""
    if flag is None or token_id is None:
        return ids
    if not flag:
        return [t for t in ids if t != token_id]
    if token_id in ids:
        return ids
    return [token_id, *ids] if at_start else [*ids, token_id]
