"""llama.cpp runtime: a GGUF file run by llama.cpp's own kernels, in the GGUF's own quantization (``edgeval[gguf]``).

What runs is what llama.cpp runs on the device: Q4_1, Q4_K_M, Q8_0 … weights stay quantized and go through ggml's
quantized matmuls (activations quantized per block of a row, never across rows or prompts); F32/F16 GGUFs through
its float kernels. Prompts are encoded by the GGUF's own tokenizer through llama.cpp
(:class:`~edgeval.runtimes.llamacpp_tokenizer.LlamaCppTokenizer`) unless ``--tokenizer`` names another.

KV cache: one llama.cpp sequence is kept between prompts. :meth:`next_token_logits_many` sorts the prompts, keeps
the cache of the longest common prefix with the previous prompt (``llama_memory_seq_rm`` drops the rest) and runs
only the new suffix; ``tokens_requested`` / ``tokens_computed`` count what was asked and what ran. Prompts never
share a batch, so a prompt's logits do not depend on the others (``batch_invariant``); where the prefix is cut only
changes float rounding (tested against full runs). The cache is llama.cpp's default f16 (``--session-option
kv_type=f32`` keeps it in float32), and applies to full runs as well, as on the device.

Options: ``--threads`` (llama.cpp's ``n_threads`` and ``n_threads_batch``); ``--device cuda[:N]`` offloads every
layer (``n_gpu_layers=-1``) when this llama-cpp-python build has GPU offload, else exit 3; ``--session-option``
``n_ctx=N`` (default :data:`DEFAULT_N_CTX`, at most the model's training context is used), ``kv_type=f16|f32``.
``--runtime torch`` runs the same file dequantized by transformers instead.
"""
from __future__ import annotations

import contextlib
import ctypes
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..artifacts import Artifact
from ..errors import DeviceError, MeasurementError, MissingExtraError, ModelError, UsageError, require
from ._util import one_line
from .base import BaseRuntime
from .options import RuntimeOptions, refuse_unsupported
from .tokenizer import Tokenizer, find_tokenizer

#: context size asked of llama.cpp unless ``--session-option n_ctx=N`` (capped by the model's training context)
DEFAULT_N_CTX = 4096
#: bytes of logits one decode may return when every position's logits are asked for (sets rows per decode)
LOGIT_BYTES = 64 << 20
#: KV-cache storage types offered through ``--session-option kv_type=``
KV_TYPES = {"f16": 1, "f32": 0}  # GGML_TYPE_F16, GGML_TYPE_F32
SESSION_KEYS = ("n_ctx", "kv_type", "extra_buffers")
#: llama.cpp's last error lines (its log is routed here: nothing reaches stderr, errors name their cause)
_LOG: deque[str] = deque(maxlen=8)
_CALLBACK: list[Any] = []  # the installed ctypes callback, kept alive


def llama_cpp_module() -> Any:
    """``llama_cpp``, or MissingExtraError naming ``edgeval[gguf]`` (and the torch runtime as the alternative)."""
    try:
        module = require("llama_cpp", "gguf", "running a GGUF on llama.cpp")
    except MissingExtraError as exc:
        exc.detail = f"{exc.detail}; or pass --runtime torch to dequantize it with transformers instead"
        exc.args = (exc.detail,)
        raise
    _route_log(module)
    return module


def _route_log(llama_cpp: Any) -> None:
    """Send llama.cpp's log to :data:`_LOG` (errors only) instead of stderr, once per process."""
    if _CALLBACK:
        return

    def collect(level: int, text: bytes, _user: Any) -> None:
        if level == 4 or b"error" in text:  # GGML_LOG_LEVEL_ERROR is 4 in the ggml that 0.3.36 builds
            _LOG.append(text.decode("utf-8", "replace").strip())

    _CALLBACK.append(llama_cpp.llama_log_callback(collect))
    llama_cpp.llama_log_set(_CALLBACK[0], ctypes.c_void_p(0))


def gpu_layers(llama_cpp: Any, device: str | None) -> tuple[int, int]:
    """``(n_gpu_layers, main_gpu)`` for ``--device``: the CPU (0 layers), or every layer on GPU N when this build
    has GPU offload (else DeviceError, exit 3)."""
    if device in (None, "cpu"):
        return 0, 0
    kind, _, index = device.partition(":")
    if kind not in ("cuda", "gpu", "metal", "vulkan", "rocm") or (index and not index.isdigit()):
        raise UsageError(f"--device {device}: llama.cpp runs on cpu or a GPU (cuda, cuda:N, gpu, metal, vulkan)")
    if not llama_cpp.llama_supports_gpu_offload():
        raise DeviceError(f"device '{device}' is not available: this llama-cpp-python build "
                          f"({llama_cpp.__version__}) has no GPU offload; reinstall it with a GPU backend "
                          "(e.g. CMAKE_ARGS=\"-DGGML_CUDA=on\") or leave --device out to run on the CPU")
    return -1, int(index or 0)


def session_settings(session: dict[str, str]) -> tuple[int, str, str | None]:
    """``(n_ctx, kv_type, extra_buffers)`` from ``--session-option``; UsageError for an unknown key or value."""
    unknown = sorted(set(session) - set(SESSION_KEYS))
    if unknown:
        raise UsageError(f"llama.cpp has no session option {', '.join(unknown)}: known are {', '.join(SESSION_KEYS)}")
    n_ctx, kv_type = str(session.get("n_ctx", DEFAULT_N_CTX)), str(session.get("kv_type", "f16"))
    extra = None if session.get("extra_buffers") is None else str(session["extra_buffers"])
    if not (n_ctx.isascii() and n_ctx.isdigit()) or int(n_ctx) < 16:
        raise UsageError(f"--session-option n_ctx={n_ctx}: expected a whole number of tokens >= 16")
    if kv_type not in KV_TYPES:
        raise UsageError(f"--session-option kv_type={kv_type}: expected one of {', '.join(KV_TYPES)}")
    if extra not in (None, "0", "1"):
        raise UsageError(f"--session-option extra_buffers={extra}: expected 0 or 1")
    return int(n_ctx), kv_type, extra


def extra_buffers(llama_cpp: Any, setting: str | None) -> tuple[bool, str]:
    """Whether llama.cpp may repack weights into its extra CPU buffer types (AMX, interleaved Q4_0/Q8_0), and why.

    llama.cpp's default is yes. On a CPU with AMX the default here is no: llama-cpp-python 0.3.36's AMX matmul
    (``ggml_backend_amx_mul_mat``) crashed the process (SIGSEGV) on every quantized GGUF on edgeval's test VM
    (Xeon, AMX_INT8), and a gate must not die; ``--session-option extra_buffers=1`` turns them on."""
    if setting is not None:
        return setting == "1", "--session-option extra_buffers"
    amx = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    return (False, "off: the CPU has AMX (its llama.cpp kernels crashed on a test VM)") if amx else (True, "default")


@contextlib.contextmanager
def _model_params(llama_cpp: Any, **fields: Any) -> Iterator[None]:
    """Within the block, ``llama_model_default_params()`` (which ``Llama`` starts from) has ``fields`` set:
    ``Llama`` does not take every model parameter (``use_extra_bufts``) as an argument."""
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def patched() -> Any:
        params = original()
        for key, value in fields.items():
            setattr(params, key, value)
        return params

    low.llama_model_default_params = patched
    try:
        yield
    finally:
        low.llama_model_default_params = original


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class LlamaCppRuntime(BaseRuntime):
    """Runs a GGUF on llama.cpp (llama-cpp-python): its kernels, its quantization, its KV cache."""

    name = "llama.cpp"
    has_devices = True

    @classmethod
    def check_options(cls, options: RuntimeOptions) -> None:
        """Before anything runs: the session options are llama.cpp's (UsageError naming one that is not) and the
        device is one this build can use (UsageError for a name, DeviceError for a build without offload)."""
        session_settings(dict(options.session))
        if options.device not in (None, "cpu"):
            gpu_layers(llama_cpp_module(), options.device)

    def __init__(self, artifact: Artifact, tokenizer_path: str | Path | None = None,
                 options: RuntimeOptions | None = None, threads: int | None = None):
        self.options = (options or RuntimeOptions()).with_(threads=threads)
        refuse_unsupported(self.options, self)
        self._lib = llama_cpp_module()
        n_ctx, self.kv_type, extra = session_settings(dict(self.options.session))
        self.gpu_layers, main_gpu = gpu_layers(self._lib, self.options.device)
        self.extra_buffers, self._extra_why = extra_buffers(self._lib, extra)
        self._llm = self._load(artifact.path, n_ctx, main_gpu)
        super().__init__(artifact, self._tokenizer(artifact, tokenizer_path))
        self.n_vocab = int(self._llm.n_vocab())
        self.check_vocab_width(self.n_vocab, "the model's logits")
        # llama.cpp rounds the context up (to 256); the training context bounds what the positions mean
        self.max_seq_len: int = min(int(self._llm.n_ctx()), n_ctx, int(self._llm._model.n_ctx_train()) or n_ctx)
        self._rows = max(1, min(int(self._llm.n_batch), LOGIT_BYTES // (4 * self.n_vocab)))
        self._cached: list[int] = []  # the tokens whose keys/values sit in llama.cpp's sequence 0

    def _load(self, path: Path, n_ctx: int, main_gpu: int) -> Any:
        """The ``llama_cpp.Llama`` for ``path``; a file llama.cpp refuses is a one-line ModelError (its reason)."""
        threads = self.options.threads
        _LOG.clear()
        try:
            with _model_params(self._lib, use_extra_bufts=self.extra_buffers):
                return self._lib.Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                       n_gpu_layers=self.gpu_layers, main_gpu=main_gpu,
                                       type_k=KV_TYPES[self.kv_type], type_v=KV_TYPES[self.kv_type],
                                       logits_all=False, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            reasons = [line.split("error loading model: ")[-1] for line in _LOG
                       if line and "failed to load model" not in line] or [one_line(exc)]
            raise ModelError(f"llama.cpp cannot load it: {one_line(ValueError(reasons[0]))}", path=path) from None

    def _tokenizer(self, artifact: Artifact, tokenizer_path: str | Path | None) -> Tokenizer:
        """The GGUF's own tokenizer through llama.cpp, or the ``tokenizer.json`` given with ``--tokenizer``."""
        from .llamacpp_tokenizer import LlamaCppTokenizer

        if tokenizer_path is not None:
            return find_tokenizer(artifact.path, tokenizer_path)
        return LlamaCppTokenizer(self._llm, str(artifact.path))

    # -- decoding ------------------------------------------------------------------------------------------
    def _keep(self, n: int) -> int:
        """Drop the cached positions from ``n`` on; returns how many stay (0 when llama.cpp cannot cut there)."""
        ctx = self._llm._ctx
        if n < len(self._cached) and not ctx.kv_cache_seq_rm(0, n, -1):
            ctx.kv_cache_clear()
            n = 0
        self._cached = self._cached[:n]
        return n

    def _decode(self, tokens: Sequence[int], all_logits: bool) -> np.ndarray:
        """Run ``tokens`` after the cached ones; float32 logits ``(len(tokens), V)``, or ``(1, V)`` of the last."""
        start = len(self._cached)
        if start + len(tokens) > self.max_seq_len:
            raise MeasurementError(f"a sequence of {start + len(tokens)} tokens exceeds llama.cpp's context of "
                                   f"{self.max_seq_len} (--session-option n_ctx=N)", path=self.artifact.path)
        llm, step = self._llm, self._rows if all_logits else int(self._llm.n_batch)
        out = []
        for i in range(0, len(tokens), step):
            chunk = list(tokens[i:i + step])
            llm._batch.set_batch(chunk, n_past=start + i, logits_all=all_logits)
            try:
                llm._ctx.decode(llm._batch)
            except RuntimeError as exc:
                self._llm._ctx.kv_cache_clear()  # the failed batch may have left cells behind
                self._cached = []
                raise MeasurementError(f"llama.cpp failed to decode: {_LOG[-1] if _LOG else one_line(exc)}",
                                       path=self.artifact.path) from None
            self._cached.extend(chunk)
            if all_logits or i + step >= len(tokens):
                rows = len(chunk) if all_logits else 1
                out.append(np.ctypeslib.as_array(self._lib.llama_get_logits(llm.ctx), shape=(rows, self.n_vocab))
                           .astype(np.float32, copy=True))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _last_logits(self, seq: Sequence[int]) -> tuple[np.ndarray, int]:
        """Logits ``(V,)`` after ``seq``, reusing the cached prefix; and how many tokens were run."""
        if not len(seq):
            raise ValueError("a sequence has no tokens")
        keep = self._keep(min(_common(self._cached, seq), len(seq) - 1))
        return self._decode(seq[keep:], all_logits=False)[-1], len(seq) - keep

    def _all_logits(self, seq: Sequence[int]) -> np.ndarray:
        """Logits ``(len(seq), V)`` at every position of ``seq``, run in full."""
        if not len(seq):
            raise ValueError("a sequence has no tokens")
        self._keep(0)
        return self._decode(seq, all_logits=True)

    # -- the runtime interface -----------------------------------------------------------------------------
    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Each row alone, without its left padding (padding positions get zeros)."""
        out = np.zeros((*input_ids.shape, self.n_vocab), np.float32)
        for row in range(len(input_ids)):
            real = np.flatnonzero(attention_mask[row])
            start = int(real[0]) if len(real) else input_ids.shape[1]
            if start < input_ids.shape[1]:
                out[row, start:] = self._all_logits(input_ids[row, start:].tolist())
        return out

    def sequence_logits(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        return [self.check_finite(self._all_logits(list(seq))) for seq in sequences]

    def next_token_logits(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        if not sequences:
            raise ValueError("empty batch")
        self._keep(0)  # every call starts from an empty cache: its logits do not depend on the calls before it
        return self.check_finite(np.stack([self._last_logits(list(seq))[0] for seq in sequences]))

    def kv_seq_axes(self) -> list[int]:
        """A KV cache is used (llama.cpp's own, held inside it: no key/value arrays pass through edgeval)."""
        return []

    def next_token_logits_many(self, sequences: Sequence[Sequence[int]], *, max_rows: int = 32, window: int = 192,
                               progress: Callable[[int], None] | None = None,
                               columns: Sequence[int] | None = None) -> np.ndarray:
        """Logits ``(len(sequences), V)`` (``columns``: those ids only, each row checked finite first): prompts in
        sorted order, each running only what follows the prefix it shares with the previous one (llama.cpp's KV
        cache). ``max_rows`` is unused (one prompt per decode); ``progress`` is called every ``window`` prompts."""
        order = sorted(range(len(sequences)), key=lambda i: tuple(sequences[i]))
        if not order:
            raise ValueError("empty batch")
        cols = None if columns is None else np.asarray(list(columns), dtype=np.int64)
        out = np.empty((len(sequences), self.n_vocab if cols is None else len(cols)), np.float32)
        # every call starts from an empty cache, so that a prompt's logits depend on this call's prompts only, not
        # on what an earlier call (or a runtime closed and reopened in between, `--resident one`) left behind
        self._keep(0)
        for n, i in enumerate(order, 1):
            seq = list(sequences[i])
            row, computed = self._last_logits(seq)
            out[i] = row if cols is None else self.check_finite(np.asarray(row))[cols]
            self.tokens_requested += len(seq)
            self.tokens_computed += computed
            if progress is not None and (n % window == 0 or n == len(order)):
                progress(window if n % window == 0 else n % window)
        return self.check_finite(out)

    def describe(self) -> dict:
        llm = self._llm
        desc = str(llm._model.desc())
        file_type = desc.replace("(guessed) ", "").split(" ", 2)[-1]
        device = "cpu" if not self.gpu_layers else str(self.options.device)
        return {"runtime": self.name, "version": self._lib.__version__, "threads": int(llm.n_threads),
                "threads_batch": int(llm.n_threads_batch), "n_ctx": int(llm.n_ctx()), "n_batch": int(llm.n_batch),
                "max_seq_len": self.max_seq_len, "providers": [device], "device": device,
                "gpu_layers": self.gpu_layers, "model": desc, "file_type": file_type,
                "quantized": file_type not in ("all F32", "F16", "BF16"), "kv_cache": True,
                "kv_type": self.kv_type, "extra_buffers": self.extra_buffers, "extra_buffers_why": self._extra_why,
                "prefix_sharing": "sorted prompts, common prefix kept in the KV cache"}

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()
