"""ONNX Runtime backend: a ``.onnx`` causal LM (and its tokenizer.json) in, logits out. Needs only the ``onnx``
extra (onnxruntime + tokenizers): nothing here imports torch, transformers or TensorFlow.

Input layouts understood (by name, then by type):

- ``input_ids`` (int64 or int32, as the model declares) and usually ``attention_mask`` → ``logits``, the layout
  :func:`edgeval.converters.export.export_onnx` writes;
- what exporters such as optimum add: ``position_ids`` (fed :func:`~edgeval.runtimes.base.position_ids`),
  ``past_key_values.N.key/value`` (fed empty, past length 0, for a plain forward pass; other dims from the
  model's metadata), ``token_type_ids`` (zeros).

KV cache: a model with ``position_ids``, ``past_key_values.*`` inputs (batch first) and a ``present.*`` output for
each of them (optimum's ``text-generation-with-past`` layout, and ``edgeval export --kv-cache``) is run with its
cache by :meth:`~edgeval.runtimes.base.BaseRuntime.next_token_logits_many`: prompts that share a prefix compute it
once (see :mod:`edgeval.runtimes.prefix`). Without ``position_ids`` the cache is not used: edgeval cannot know how
such a graph numbers the tokens after a padded past.

The output named ``logits`` is used, else the first output; it must be float logits ``(batch, seq, vocab)`` (or
``(batch, vocab)``: next-token logits only) whose vocabulary dimension covers every id the tokenizer can produce
(wider is fine: models pad their embedding). Anything else, a hidden-state output say, is refused at load (exit 3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..artifacts import Artifact
from ..errors import DeviceError, MeasurementError, ModelError, UsageError, require
from ._util import one_line
from .base import BaseRuntime, pad_left, position_ids
from .options import RuntimeOptions, refuse_unsupported
from .ort_config import check_config_keys
from .tokenizer import find_tokenizer

NEXT_OUTPUT = "next_token_logits"
LAST_SWITCH = "logits_last_only"  # edgeval.converters.kv_export.SWITCH_INPUT (runtimes do not import converters)

_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
           "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(bool)": np.bool_}
_IDS_NAMES = ("input_ids", "input", "ids", "tokens", "token_ids")


def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """The exceptions ONNX Runtime raises (its pybind classes derive from Exception directly) plus the builtins."""
    state = ort.capi.onnxruntime_pybind11_state
    found = [obj for obj in vars(state).values() if isinstance(obj, type) and issubclass(obj, Exception)]
    return (RuntimeError, ValueError, OSError, *found)


@dataclass(frozen=True)
class _Input:
    """One graph input: its name, ONNX type (``tensor(int64)``…) and shape (ints or symbolic names)."""

    name: str
    type: str
    shape: tuple[int | str | None, ...]

    @property
    def dtype(self) -> Any:
        """The numpy dtype to feed, or None when edgeval does not feed this type."""
        return _DTYPES.get(self.type)

    @property
    def is_integer(self) -> bool:
        return self.dtype in (np.int64, np.int32)

    def __str__(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.type}[{dims}]"


def _ids_input(inputs: list[_Input]) -> _Input | None:
    """The token-id input: an integer input named like input_ids, else the first integer input of rank 2."""
    integer = [i for i in inputs if i.is_integer and len(i.shape) == 2]
    named = [i for i in integer if i.name.lower() in _IDS_NAMES]
    loose = [i for i in integer if "mask" not in i.name.lower() and "position" not in i.name.lower()
             and "type" not in i.name.lower()]
    found = named or loose
    return found[0] if found else None


def check_external_data(path: Path) -> None:
    """Refuse (ModelError) a model whose external data points outside its folder: an absolute location, ``..``,
    or a link that resolves elsewhere; and a file that is not an ONNX model. Nothing outside the model's folder
    is read. The file's framing is walked (:mod:`edgeval.onnxfile`), its weights are not loaded."""
    from ..onnxfile import OnnxFileError, onnx_layout, refused_location

    try:
        tensors = onnx_layout(path).tensors
    except OnnxFileError as exc:
        raise ModelError(f"not a readable ONNX model ({exc}): truncated or garbage", path=path) from None
    except OSError:
        return  # unreadable: ONNX Runtime says why
    for tensor in tensors:
        if tensor.location is not None and (why := refused_location(path.parent, tensor.location)) is not None:
            raise ModelError(f"a tensor's external data location {tensor.location!r} {why}: refused (external "
                             "data must be a file beside the model)", path=path)


def _past_shape(spec: _Input, batch: int, path: Path | None = None) -> tuple[int, ...]:
    """An empty past tensor's shape: batch dims → ``batch``, the symbolic sequence dim → 0, static dims kept."""
    names = [str(d).lower() if not isinstance(d, int) else "" for d in spec.shape]
    has_batch = any("batch" in n for n in names)
    dims = []
    for index, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim >= 0:
            dims.append(dim)
        elif "batch" in names[index] or (index == 0 and not has_batch):
            dims.append(batch)
        else:
            dims.append(0)
    if dims.count(0) != 1:
        raise ModelError(f"cannot tell the past-sequence dimension of input {spec}: edgeval feeds past key/values "
                         "empty and needs every other dimension static", path=path)
    return tuple(dims)


#: op types whose result for one row depends on the whole batch: ONNX Runtime's dynamic quantization computes one
#: activation scale and zero point per tensor per call (DynamicQuantizeLinear, and the fused DynamicQuantizeMatMul
#: and DynamicQuantizeLSTM)
BATCH_DEPENDENT_OPS = ("DynamicQuantize",)


def batch_dependent(path: Path) -> bool:
    """Whether the graph runs a batch-dependent op (its op types, subgraphs and local functions included, read
    from the file's framing). A file that cannot be walked counts as batch-dependent: scoring is then slower (one
    prompt per call, no prefix sharing), never wrong."""
    from ..onnxfile import OnnxFileError, onnx_layout

    try:
        ops = onnx_layout(path).op_types
    except (OSError, OnnxFileError):
        return True
    return any(op.startswith(BATCH_DEPENDENT_OPS) for op in ops)


#: (path, size, mtime) -> whether the file's last-logits switch kept the next-token logits on the probe
_SWITCH_CHECKED: dict[tuple[str, int, int], bool] = {}

CPU_PROVIDER = "CPUExecutionProvider"


def execution_provider(ort: Any, requested: str | None) -> str:
    """The full name of the requested provider (``cuda`` → ``CUDAExecutionProvider``; None → the CPU's), checked
    against the installed onnxruntime's: a missing one is a MissingExtraError (exit 3) naming it and the ones
    there are."""
    if requested is None:
        return CPU_PROVIDER
    available = list(ort.get_available_providers())
    wanted = requested.lower().removesuffix("executionprovider")
    match = next((p for p in available if p.lower().removesuffix("executionprovider") == wanted), None)
    if match is None:
        raise DeviceError(f"execution provider '{requested}' is not in this onnxruntime "
                                f"{ort.__version__} (it has {', '.join(available)}); install the onnxruntime "
                                "package built for it (onnxruntime-gpu, onnxruntime-openvino, …)")
    return match


#: the session config entry that takes initializers from the allocator itself (edgeval sets it to "1")
INITIALIZERS_ENTRY = "session.use_device_allocator_for_initializers"
#: the entry that makes ORT record which execution provider runs each node (edgeval sets it to "1")
ASSIGNMENT_ENTRY = "session.record_ep_graph_assignment_info"


def check_session_entries(ort: Any, session: Mapping[str, str]) -> None:
    """UsageError for a session entry this onnxruntime does not know (:mod:`.ort_config`) or one edgeval sets
    itself and depends on."""
    check_config_keys(ort, [str(key) for key in session])
    if str(session.get(ASSIGNMENT_ENTRY, "1")) != "1":
        raise UsageError(f"--session-option {ASSIGNMENT_ENTRY}: edgeval keeps it at 1 (it reports and checks which "
                         "nodes each execution provider runs)")


def session_options(ort: Any, options: RuntimeOptions) -> Any:
    """ONNX Runtime session options: all graph optimisations, sequential execution, initializers outside the
    CPU arena, the options' threads and session config entries (a key this onnxruntime does not know, or a
    value it refuses, is a UsageError naming it: see :mod:`edgeval.runtimes.ort_config`)."""
    check_session_entries(ort, options.session)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # fatal only: ORT warns at every load of an overridable input (kv_export's switch), and the errors that matter
    # come back as exceptions, which edgeval reports in one line (ORT's log line would be a second one on stderr);
    # the nodes a provider could not take, which ORT only warned about, are in describe()'s nodes_by_provider
    so.log_severity_level = 4
    if options.threads:
        so.intra_op_num_threads = options.threads
    # weights from the allocator itself, not carved out of the growing CPU arena (whose doubling chunks strand
    # memory): a SmolLM2 export's session rests at 718 MiB instead of 989, same kernels and numbers; a
    # --session-option may set it back to "0"
    for entry in (INITIALIZERS_ENTRY, ASSIGNMENT_ENTRY):
        if entry not in options.session:
            so.add_session_config_entry(entry, "1")
    for key, value in options.session.items():
        try:
            so.add_session_config_entry(str(key), str(value))
        except _ort_errors(ort) as exc:
            raise UsageError(f"session option {key}={value}: {one_line(exc)}") from None
    return so


#: ORT's own setting that makes a graph with nodes the requested provider cannot take a load error
NO_FALLBACK_ENTRY = "session.disable_cpu_ep_fallback"


def no_fallback(options: RuntimeOptions, provider: str) -> bool:
    """Whether ``session.disable_cpu_ep_fallback=1`` asks for every node on ``provider`` (then the CPU is not
    added as the fallback); UsageError when ``provider`` is the CPU itself."""
    strict = str(options.session.get(NO_FALLBACK_ENTRY, "0")) == "1"
    if strict and provider == CPU_PROVIDER:
        raise UsageError(f"--session-option {NO_FALLBACK_ENTRY}=1 keeps nodes off the CPU: it needs a --provider "
                         "other than the CPU")
    return strict


def open_session(ort: Any, path: Path, options: RuntimeOptions) -> tuple[Any, dict[str, int] | None]:
    """An inference session of ``path`` and its :func:`node_placement`: all graph optimisations, sequential
    execution, the options' intra-op threads, execution provider (CPU by default, which also takes the nodes
    another provider cannot, unless ``session.disable_cpu_ep_fallback=1``) and session config entries.
    ModelError when ORT cannot load it; DeviceError when the provider did not start or took none of the nodes
    (the CPU would be measured in its name)."""
    check_external_data(path)
    provider = execution_provider(ort, options.provider)
    strict = no_fallback(options, provider)
    providers = [provider] if strict else list(dict.fromkeys([provider, CPU_PROVIDER]))
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(ort, options), providers=providers)
    except _ort_errors(ort) as exc:
        raise ModelError(f"ONNX Runtime cannot load it: {one_line(exc)}", path=path) from None
    if session.get_providers()[0] != provider:  # ORT falls back to the CPU when a provider fails to start
        raise DeviceError(f"{provider} did not start (the session runs on {session.get_providers()}): "
                          "check the GPU driver and libraries for it", path=path)
    placement = node_placement(session)
    if provider == CPU_PROVIDER:
        return session, placement
    if placement is None:
        raise DeviceError(f"this onnxruntime ({ort.__version__}) cannot say which nodes run on {provider} (its graph "
                          "assignment info, onnxruntime >= 1.23): the gate cannot tell it from the CPU", path=path)
    if not placement.get(provider):
        raise DeviceError(f"{provider} took none of the graph's {sum(placement.values())} nodes (all run on "
                          f"{', '.join(sorted(placement))}): the gate would measure the CPU in its name", path=path)
    return session, placement


def node_placement(session: Any) -> dict[str, int] | None:
    """How many of the optimised graph's nodes each execution provider runs (``{"CUDAExecutionProvider": 812,
    "CPUExecutionProvider": 14}``): nodes a provider cannot take run on the CPU, which ORT does not report
    otherwise. None when this onnxruntime cannot say (before 1.23: no such call; it raises when the recording is
    off, which edgeval never lets a session option do)."""
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception:  # noqa: BLE001  (AttributeError on old ORT; ORT's own Fail, which derives from Exception)
        return None
    counts: dict[str, int] = {}
    for subgraph in subgraphs or ():
        counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    return counts or None


class OnnxRuntime(BaseRuntime):
    """Runs a ``.onnx`` model on ONNX Runtime (CPU); with a KV cache where the model's layout has one."""

    name = "onnxruntime"

    has_providers = True

    def __init__(self, artifact: Artifact, tokenizer_path: str | Path | None = None,
                 options: RuntimeOptions | None = None, threads: int | None = None):
        self.options = (options or RuntimeOptions()).with_(threads=threads)
        refuse_unsupported(self.options, self)
        self._ort = require("onnxruntime", "onnx", "running ONNX models")
        self.threads = self.options.threads
        #: the session, and its nodes per execution provider (:func:`node_placement`, in describe())
        self.session, self.placement = open_session(self._ort, artifact.path, self.options)
        self.inputs = [_Input(i.name, i.type, tuple(i.shape)) for i in self.session.get_inputs()]
        self.ids = self._check_inputs(artifact.path)
        specs = {o.name: _Input(o.name, o.type, tuple(o.shape)) for o in self.session.get_outputs()}
        outputs = list(specs)
        self.logits_name = "logits" if "logits" in outputs else outputs[0]
        #: an output with the last position's logits only (edgeval's exports have it): next_token_logits uses it
        self.next_name = NEXT_OUTPUT if NEXT_OUTPUT in outputs else None
        if specs[self.logits_name].shape and len(specs[self.logits_name].shape) == 2:
            self.next_name = self.logits_name  # (batch, vocab): next-token logits only, no per-position scoring
        #: (past input, its present output, sequence axis) per cache tensor, when the model can run with a cache
        self.cache = self._cache_layout(outputs)
        #: whether the graph has edgeval's last-logits switch (an overridable initializer, see converters.kv_export)
        self.last_switch = LAST_SWITCH in {i.name for i in self.session.get_overridable_initializers()}
        self._switch_ok: bool | None = None  # the switch seen to keep the next-token logits (see _use_switch)
        self.batch_invariant = not batch_dependent(artifact.path)
        super().__init__(artifact, find_tokenizer(artifact.path, tokenizer_path))
        for name in dict.fromkeys([self.logits_name, self.next_name]):
            if name is not None:
                self._check_output(specs[name], listing=", ".join(str(o) for o in specs.values()))

    @classmethod
    def check_options(cls, options: RuntimeOptions) -> None:
        """Before anything runs: the requested execution provider is installed (DeviceError naming it if not),
        every session config key is one this onnxruntime knows and ``session.disable_cpu_ep_fallback=1`` comes
        with a provider other than the CPU (UsageError naming the option if not)."""
        if options.provider is not None or options.session:
            ort = require("onnxruntime", "onnx", "running ONNX models")
            check_session_entries(ort, options.session)
            no_fallback(options, execution_provider(ort, options.provider))

    def _check_inputs(self, path: Path) -> _Input:
        """The token-id input; ModelError when the model does not take token ids or has inputs we cannot feed."""
        ids = _ids_input(self.inputs)
        listing = ", ".join(str(i) for i in self.inputs)
        if ids is None:
            raise ModelError(f"inputs are ({listing}): not a causal LM taking input_ids", path=path)
        for spec in self.inputs:
            if spec is not ids and self._role(spec) is None:
                raise ModelError(f"input '{spec.name}' is not one edgeval can feed (inputs are {listing})", path=path)
            if spec.dtype is None:
                raise ModelError(f"input {spec} has a type edgeval cannot feed", path=path)
            if self._role(spec) == "past":
                _past_shape(spec, batch=1, path=path)  # fail at load, not at the first batch
        return ids

    def _check_output(self, spec: _Input, listing: str) -> None:
        """The scored output must be float logits ``(batch, seq, vocab)`` or ``(batch, vocab)`` whose vocabulary
        dimension (when declared) covers the tokenizer; else ModelError naming the outputs."""
        path = self.artifact.path
        hint = "; name the logits output 'logits'" if spec.name != "logits" else ""
        if spec.type not in ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)"):
            raise ModelError(f"output {spec} is not float logits (outputs are {listing}){hint}", path=path)
        if len(spec.shape) not in (2, 3):
            raise ModelError(f"output {spec} is not (batch, seq, vocab) or (batch, vocab) logits "
                             f"(outputs are {listing}){hint}", path=path)
        width = spec.shape[-1]
        self.check_vocab_width(width if isinstance(width, int) and width > 0 else None, f"output '{spec.name}'")

    @staticmethod
    def _role(spec: _Input) -> str | None:
        """What an input other than the ids is: mask, position, past, token_type, or None (unknown)."""
        name = spec.name.lower()
        if "mask" in name:
            return "mask"
        if "position" in name:
            return "position"
        if name.startswith("past"):
            return "past"
        if "token_type" in name:
            return "token_type"
        return None

    def _cache_layout(self, outputs: list[str]) -> list[tuple[_Input, str, int]] | None:
        """Pairs each past input with its present output; None unless every one has one, the batch axis is
        first and the model takes position_ids."""
        past = [spec for spec in self.inputs if self._role(spec) == "past"]
        if not past or not any(self._role(spec) == "position" for spec in self.inputs):
            return None
        layout = []
        for spec in past:
            names = (spec.name.replace("past_key_values", "present", 1), spec.name.replace("past", "present", 1))
            present = next((name for name in names if name in outputs), None)
            probe = _past_shape(spec, batch=-7)
            if present is None or probe[0] != -7:
                return None
            layout.append((spec, present, probe.index(0)))
        return layout

    def kv_seq_axes(self) -> list[int] | None:
        """The cache's sequence axes; None without a cache, and for a batch-dependent graph: where a shared prefix
        is cut changes the activation scales of both parts, so every prompt runs in full, alone, as the device's
        prefill runs it."""
        if self.cache is None or not self.batch_invariant:
            return None
        return [axis for _, _, axis in self.cache]

    def _cached_step(self, input_ids, attention_mask, positions, past, keep):
        batch = input_ids.shape[0]
        values = {"mask": attention_mask, "position": positions, "token_type": np.zeros_like(input_ids)}
        feeds = {self.ids.name: input_ids.astype(self.ids.dtype)}
        for spec in self.inputs:
            role = None if spec is self.ids else self._role(spec)
            if role is not None and role != "past":
                feeds[spec.name] = values[role].astype(spec.dtype)
        for k, (spec, _, _) in enumerate(self.cache):
            feeds[spec.name] = (np.zeros(_past_shape(spec, batch), dtype=spec.dtype) if past is None
                                else past[k].astype(spec.dtype, copy=False))
        if self._use_switch():  # edgeval's exports: the LM head at the last position only (converters.kv_export)
            feeds[LAST_SWITCH] = np.ones(1, np.int64)
        names = [self.next_name or self.logits_name] + ([name for _, name, _ in self.cache] if keep else [])
        try:
            results = self.session.run(names, feeds)
        except _ort_errors(self._ort) as exc:
            raise MeasurementError(f"ONNX Runtime failed on a cached batch of shape {tuple(input_ids.shape)} "
                                   f"after {attention_mask.shape[1] - input_ids.shape[1]} past tokens: "
                                   f"{one_line(exc)}", path=self.artifact.path) from None
        logits = np.asarray(results[0])
        if logits.ndim not in (2, 3) or logits.shape[0] != batch:
            raise MeasurementError(f"output '{names[0]}' has shape {logits.shape} for a batch of "
                                   f"{tuple(input_ids.shape)}", path=self.artifact.path)
        return (logits[:, -1, :] if logits.ndim == 3 else logits), (results[1:] if keep else None)

    def _feeds(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """The input dict for one batch, every tensor in the dtype the model declares."""
        batch = input_ids.shape[0]
        values = {"mask": attention_mask, "position": position_ids(attention_mask),
                  "token_type": np.zeros_like(input_ids)}
        feeds = {self.ids.name: input_ids.astype(self.ids.dtype)}
        for spec in self.inputs:
            role = None if spec is self.ids else self._role(spec)
            if role == "past":
                feeds[spec.name] = np.zeros(_past_shape(spec, batch), dtype=spec.dtype)
            elif role is not None:
                feeds[spec.name] = values[role].astype(spec.dtype)
        return feeds

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, output: str | None = None) -> np.ndarray:
        feeds = self._feeds(input_ids, attention_mask)
        if output is not None and output == self.next_name and self._use_switch():
            feeds[LAST_SWITCH] = np.ones(1, np.int64)  # next-token logits alone: the LM head at the last position
        try:
            (logits,) = self.session.run([output or self.logits_name], feeds)
        except _ort_errors(self._ort) as exc:
            raise MeasurementError(f"ONNX Runtime failed on a batch of shape {tuple(input_ids.shape)}: "
                                   f"{one_line(exc)}", path=self.artifact.path) from None
        return logits

    def next_token_logits(self, sequences) -> np.ndarray:
        """Logits of the next token; with a ``next_token_logits`` output, ORT computes the LM head only there."""
        if self.next_name is None or (not self.batch_invariant and len(sequences) > 1):
            return super().next_token_logits(sequences)
        ids, mask = pad_left(sequences, self.tokenizer.pad_id)
        logits = np.asarray(self._forward(ids, mask, self.next_name))
        if logits.ndim not in (2, 3) or logits.shape[0] != ids.shape[0]:
            raise MeasurementError(f"output '{self.next_name}' has shape {logits.shape} for a batch of "
                                   f"{tuple(ids.shape)}", path=self.artifact.path)
        return self.check_finite(logits[:, -1, :] if logits.ndim == 3 else logits)

    def computes_last_only(self) -> bool:
        """True with a ``next_token_logits`` (or ``(batch, vocab)``) output: ORT then never returns full logits
        for next-token scoring."""
        return self.next_name is not None

    def _use_switch(self) -> bool:
        """Whether to feed the last-logits switch: the graph has one, its results do not depend on the batch (a
        dynamically quantized head takes its activation scale from the rows it runs on, so the last row alone would
        change), and it was seen to leave the next-token logits as they are without it. A switch is the file's
        claim, so it is checked once per file state, on a 3-token probe; a graph where it changes the logits is
        run without it (slower, right)."""
        if not (self.last_switch and self.batch_invariant):
            return False
        if self._switch_ok is None:
            stat = Path(self.artifact.path).stat()
            key = (str(self.artifact.path), stat.st_size, stat.st_mtime_ns)
            if key not in _SWITCH_CHECKED:
                _SWITCH_CHECKED[key] = self._switch_keeps_logits()
            self._switch_ok = _SWITCH_CHECKED[key]
        return self._switch_ok

    def _switch_keeps_logits(self) -> bool:
        ids, mask = np.array([[1, 2, 3]], np.int64), np.ones((1, 3), np.int64)
        name = self.next_name or self.logits_name
        feeds = self._feeds(ids, mask)
        try:
            plain, switched = (np.asarray(self.session.run([name], f)[0])
                               for f in (feeds, {**feeds, LAST_SWITCH: np.ones(1, np.int64)}))
        except _ort_errors(self._ort):
            return False
        plain, switched = (x.reshape(x.shape[0], -1, x.shape[-1])[:, -1] for x in (plain, switched))
        return plain.shape == switched.shape and bool(np.isfinite(plain).all()) and bool(
            np.allclose(plain, switched, rtol=1e-4, atol=1e-4))

    def describe(self) -> dict:
        return {"runtime": self.name, "version": self._ort.__version__, "threads": self.threads,
                "providers": self.session.get_providers(), "nodes_by_provider": self.placement,
                "inputs": [i.name for i in self.inputs],
                "output": self.logits_name, "next_token_output": self.next_name, "kv_cache": self.cache is not None,
                "batch_invariant": self.batch_invariant,
                "last_logits_switch": self._switch_ok if self.last_switch else None}

    def close(self) -> None:
        self.session = None
