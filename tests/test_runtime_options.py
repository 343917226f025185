"""Runtime choice and options from the command line and the policy: --runtime, --baseline-runtime, --provider,
--device, --dtype, --session-option and ``runtime:``. The accelerator paths are exercised on the CPU: provider
names, what a missing provider or device does (exit 3, named), and that a provider which silently falls back to
the CPU is refused rather than measured."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeval.cli import main
from edgeval.errors import DeviceError, UsageError
from edgeval.runtimes import RuntimeOptions, load_runtime
from edgeval.runtimes.onnx import execution_provider

FAST = ["--validators", "latency", "--set", "latency.runs=3", "--set", "latency.warmup=0", "--set",
        "latency.seq_len=8", "-q"]


def run(tmp_path: Path, *args: object, capsys) -> tuple[int, dict | None, str]:
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args] + ["--report", str(report)])
    err = capsys.readouterr().err
    return info.value.code, json.loads(report.read_text()) if report.exists() else None, err


def test_the_default_runtime_and_options_are_recorded(tiny_llama_onnx: Path, tmp_path: Path, capsys) -> None:
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--threads", "1", "--provider", "cpu",
                         capsys=capsys)
    assert doc is not None and doc["verdict"] != "error", err
    chosen = doc["run"]["runtimes"]["candidate"]
    assert chosen["runtime"] == "onnxruntime" and chosen["plugin"] == "builtin"
    assert chosen["options"]["provider"] == "cpu" and chosen["options"]["threads"] == 1
    assert doc["results"]["latency"]["runtime"]["providers"][0] == "CPUExecutionProvider"
    placement = doc["results"]["latency"]["runtime"]["nodes_by_provider"]  # what ran where, as ORT assigned it
    assert list(placement) == ["CPUExecutionProvider"] and placement["CPUExecutionProvider"] > 10, placement


@pytest.mark.parametrize(("flags", "needle"), [
    (["--runtime", "nope"], "unknown runtime 'nope'"),
    (["--runtime", "tflite"], "runtime 'tflite' runs tflite files, not onnx"),
    (["--baseline-runtime", "torch"], "--baseline-runtime needs a baseline model"),
    (["--dtype", "float16"], "cannot honour --dtype float16"),
    (["--device", "cuda"], "cannot honour --device cuda"),
])
def test_runtime_choices_that_cannot_be_made_are_usage_errors(flags: list[str], needle: str, tiny_llama_onnx: Path,
                                                              tmp_path: Path, capsys) -> None:
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, *flags, capsys=capsys)
    assert code == 2 and needle in err and doc is None, err


def test_a_provider_this_onnxruntime_lacks_is_exit_3_naming_it(tiny_llama_onnx: Path, tmp_path: Path,
                                                               capsys) -> None:
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--provider", "cuda", capsys=capsys)
    assert code == 3 and doc["verdict"] == "error" and doc["checks"] == [], err  # refused before measuring
    message = doc["errors"][0]["message"]
    assert doc["errors"][0]["source"] == "runtime"
    assert "execution provider 'cuda' is not in this onnxruntime" in message and "CPUExecutionProvider" in message
    # refused even when no validator of the run opens a runtime (size reads the file only)
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, "--validators", "size", "--provider", "cuda",
                         "--set", "size.max_bytes=1000000000", "-q", capsys=capsys)
    assert code == 3 and doc["verdict"] == "error", err


def test_a_provider_on_a_torch_candidate_is_refused_up_front(tiny_llama_dir: Path, tmp_path: Path,
                                                             capsys) -> None:
    code, doc, err = run(tmp_path, "check", tiny_llama_dir, *FAST, "--provider", "cuda", capsys=capsys)
    assert code == 2 and "runtime 'torch' cannot honour --provider cuda" in err and doc is None


def test_a_device_this_machine_lacks_is_exit_3(tiny_llama_dir: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, doc, err = run(tmp_path, "check", tiny_llama_dir, *FAST, "--device", "cuda", capsys=capsys)
    assert code == 3 and doc["verdict"] == "error", err
    assert "device 'cuda' is not available here" in doc["errors"][0]["message"]


def test_torch_honours_device_and_dtype(tiny_llama_dir: Path) -> None:
    runtime = load_runtime(tiny_llama_dir, options=RuntimeOptions(device="cpu", dtype="bfloat16", threads=1))
    try:
        assert runtime.describe()["dtype"] == "bfloat16" and runtime.describe()["device"] == "cpu"
        assert next(runtime.model.parameters()).dtype.__str__() == "torch.bfloat16"
        logits = runtime.next_token_logits([[5, 6, 7]])
        assert logits.dtype.name == "float32" and logits.shape[0] == 1
    finally:
        runtime.close()


def test_the_policy_runtime_section_applies_and_the_command_line_wins(tiny_llama_onnx: Path, tmp_path: Path,
                                                                      capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("runtime: {name: onnxruntime, threads: 1, provider: CPUExecutionProvider}\n")
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--policy", policy, capsys=capsys)
    options = doc["run"]["runtimes"]["candidate"]["options"]
    assert options["threads"] == 1 and options["provider"] == "CPUExecutionProvider", err
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--policy", policy, "--threads", "2",
                         capsys=capsys)
    assert doc["run"]["runtimes"]["candidate"]["options"]["threads"] == 2, err
    policy.write_text("runtime: {provider: 3}\n")
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--policy", policy, capsys=capsys)
    assert code == 3 and "runtime" in err, err


def test_the_baseline_gets_only_the_options_its_runtime_has(tiny_llama_onnx: Path, tiny_llama_dir: Path,
                                                            tmp_path: Path, capsys) -> None:
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, "--baseline", tiny_llama_dir, *FAST, "--provider",
                         "cpu", capsys=capsys)
    assert doc is not None and doc["verdict"] != "error", err
    runtimes = doc["run"]["runtimes"]
    assert runtimes["candidate"]["options"]["provider"] == "cpu"
    assert runtimes["baseline"]["runtime"] == "torch" and runtimes["baseline"]["options"]["provider"] is None
    assert runtimes["baseline"]["options"]["runtime"] == "torch"  # its own, not the candidate's choice


def test_provider_names_are_matched_against_the_installed_ones() -> None:
    ort = SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
                          __version__="test")
    assert execution_provider(ort, None) == "CPUExecutionProvider"
    assert execution_provider(ort, "cuda") == "CUDAExecutionProvider"
    assert execution_provider(ort, "CUDAExecutionProvider") == "CUDAExecutionProvider"
    with pytest.raises(DeviceError, match="'tensorrt' is not in this onnxruntime test .*CUDAExecutionProvider"):
        execution_provider(ort, "tensorrt")


def test_a_provider_that_falls_back_to_the_cpu_is_refused(tiny_llama_onnx: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime starts a session on the CPU when the requested provider fails to load (no driver): edgeval
    then refuses the session instead of timing the CPU as if it were the GPU."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real = ort.InferenceSession

    def cpu_only(path, sess_options=None, providers=None):  # what ORT does when CUDA fails to start
        assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", cpu_only)
    with pytest.raises(DeviceError, match="CUDAExecutionProvider did not start"):
        load_runtime(tiny_llama_onnx, options=RuntimeOptions(provider="cuda"))


def test_options_are_checked_when_built() -> None:
    with pytest.raises(UsageError, match="unknown dtype"):
        RuntimeOptions(dtype="int3")
    with pytest.raises(UsageError, match="threads"):
        RuntimeOptions(threads=0)
    assert RuntimeOptions.from_policy({"name": "torch", "threads": 2}, threads=4).threads == 4


def fake_ort(tmp_path: Path, library: bytes | None) -> SimpleNamespace:
    """An onnxruntime stand-in whose capi folder holds one native library with ``library``'s bytes."""
    (tmp_path / "capi").mkdir(parents=True, exist_ok=True)
    if library is not None:
        (tmp_path / "capi" / "onnxruntime_pybind11_state.so").write_bytes(library)
    return SimpleNamespace(__file__=str(tmp_path / "__init__.py"), __version__="test")


def test_session_keys_are_known_only_as_whole_strings_of_the_installed_onnxruntime(tmp_path: Path) -> None:
    from edgeval.runtimes.ort_config import check_config_keys, unknown_keys

    ort = fake_ort(tmp_path, b"\x7fELF\x00session.real_key\x00ep.vendor.\x00Failed to create session.\x00")
    asked = ["session.real_key", "ep.vendor.any_option", "session.real_ke", "real_key", "session.other", "ep.x"]
    assert unknown_keys(ort, asked) == ["session.real_ke", "real_key", "session.other", "ep.x"]
    with pytest.raises(UsageError, match=r"session.real_kye: onnxruntime test has no such session setting and "
                                         r"would ignore it \(did you mean session.real_key\?\)"):
        check_config_keys(ort, ["session.real_key", "session.real_kye"])
    check_config_keys(ort, ["ep.vendor.any_option"])  # known through ORT's own prefix
    with pytest.raises(UsageError, match="cannot check it against this onnxruntime"):
        check_config_keys(fake_ort(tmp_path / "empty", None), ["session.real_key"])


def test_a_misspelt_session_option_is_refused_before_anything_runs(tiny_llama_onnx: Path, tmp_path: Path,
                                                                   capsys) -> None:
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--session-option",
                         "session.intra_op.allow_spining=0", capsys=capsys)
    assert code == 2 and doc is None, err
    assert "session.intra_op.allow_spining" in err and "did you mean session.intra_op.allow_spinning" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--session-option",
                         "session.intra_op.allow_spinning=0", capsys=capsys)
    assert doc is not None and doc["verdict"] != "error", err
    assert doc["run"]["runtimes"]["candidate"]["options"]["session"] == {"session.intra_op.allow_spinning": "0"}


def test_node_placement_counts_each_providers_nodes() -> None:
    from edgeval.runtimes.onnx import node_placement

    def subgraph(ep: str, nodes: int) -> SimpleNamespace:
        return SimpleNamespace(ep_name=ep, get_nodes=lambda: [object()] * nodes)

    parts = [subgraph("CUDAExecutionProvider", 40), subgraph("CPUExecutionProvider", 3),
             subgraph("CUDAExecutionProvider", 2)]
    session = SimpleNamespace(get_provider_graph_assignment_info=lambda: parts)
    assert node_placement(session) == {"CUDAExecutionProvider": 42, "CPUExecutionProvider": 3}
    assert node_placement(SimpleNamespace()) is None  # an onnxruntime without the API

    class Fail(Exception):  # what ORT raises when the recording is off (its Fail derives from Exception)
        pass

    def off():
        raise Fail("session.record_ep_graph_assignment_info must be set to \"1\"")

    assert node_placement(SimpleNamespace(get_provider_graph_assignment_info=off)) is None


def test_the_node_placement_record_cannot_be_turned_off_and_a_provider_without_it_is_refused(
        tiny_llama_onnx: Path, tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch) -> None:
    """Turning ORT's record off made every ONNX run an internal error; had node_placement read that as "unknown",
    a provider that takes no node would have been measured as the CPU in its name."""
    import onnxruntime as ort

    from edgeval.runtimes import onnx as onnx_runtime

    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--session-option",
                         "session.record_ep_graph_assignment_info=0", capsys=capfd)
    assert code == 2 and "edgeval keeps it at 1" in err, err
    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no AzureExecutionProvider")
    monkeypatch.setattr(onnx_runtime, "node_placement", lambda session: None)  # an onnxruntime before 1.23
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--provider", "azure", capsys=capfd)
    assert code == 3 and "cannot say which nodes run on AzureExecutionProvider" in err, err


def test_session_options_go_only_to_the_runtime_they_belong_to(tiny_llama_gguf: Path, tiny_llama_onnx: Path,
                                                               tmp_path: Path, capsys) -> None:
    """llama.cpp's n_ctx for a GGUF candidate used to reach an ONNX baseline, whose runtime refused the key."""
    pytest.importorskip("llama_cpp")
    code, doc, err = run(tmp_path, "check", tiny_llama_gguf, "--baseline", tiny_llama_onnx, *FAST,
                         "--session-option", "n_ctx=512", capsys=capsys)
    assert doc is not None and doc["verdict"] != "error", err
    chosen = doc["run"]["runtimes"]
    assert chosen["candidate"]["options"]["session"] == {"n_ctx": "512"}
    assert chosen["baseline"]["options"]["session"] == {} and chosen["baseline"]["runtime"] == "onnxruntime"


def test_a_provider_that_takes_no_node_is_refused_and_strict_placement_is_onnxruntimes_own(
        tiny_llama_onnx: Path, tmp_path: Path, capfd) -> None:
    """The CPU wheel's AzureExecutionProvider starts but runs no node of a language model: every node would run on
    the CPU under its name. With ORT's session.disable_cpu_ep_fallback=1 such a graph does not load at all."""
    import onnxruntime as ort

    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no AzureExecutionProvider")
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--provider", "azure", capsys=capfd)
    assert code == 3 and doc["verdict"] == "error", err
    assert "AzureExecutionProvider took none of the graph's" in err and "CPUExecutionProvider" in err
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--provider", "azure", "--session-option",
                         "session.disable_cpu_ep_fallback=1", capsys=capfd)
    assert code == 3 and "fallback to CPU EP has been explicitly disabled" in err, err
    assert len(err.strip().splitlines()) == 1  # ORT's own log line is not printed beside edgeval's
    code, doc, err = run(tmp_path, "check", tiny_llama_onnx, *FAST, "--session-option",
                         "session.disable_cpu_ep_fallback=1", capsys=capfd)
    assert code == 2 and doc is None and "needs a --provider other than the CPU" in err, err


def test_thread_counts_beyond_four_per_cpu_are_refused() -> None:
    """llama.cpp's OpenMP aborted at 40,000 threads and crashed at 100,000 (no report); ONNX Runtime stalled."""
    from edgeval.runtimes.options import max_threads

    assert RuntimeOptions(threads=max_threads()).threads == max_threads()
    with pytest.raises(UsageError, match=r"threads 100000 is more than 4 per CPU .* at most"):
        RuntimeOptions(threads=100_000)
    with pytest.raises(UsageError, match="positive integer"):
        RuntimeOptions(threads=True)


def test_llamacpp_options_are_checked_before_anything_runs() -> None:
    """Its session options and device used to be refused only inside a validator, as an internal error (exit 4)."""
    pytest.importorskip("llama_cpp")
    from edgeval.runtimes.llamacpp import LlamaCppRuntime

    for session, needle in [({"foo": "1"}, "no session option foo"), ({"kv_type": "q8"}, "expected one of"),
                            ({"n_ctx": "²"}, "whole number of tokens")]:
        with pytest.raises(UsageError, match=needle):
            LlamaCppRuntime.check_options(RuntimeOptions(session=session))
    with pytest.raises(UsageError, match="llama.cpp runs on cpu or a GPU"):
        LlamaCppRuntime.check_options(RuntimeOptions(device="cuda:x"))
    LlamaCppRuntime.check_options(RuntimeOptions(session={"n_ctx": "512", "kv_type": "f32"}))


def test_a_usage_error_found_inside_a_validator_is_the_users_not_a_bug() -> None:
    from edgeval.report import describe_error

    assert describe_error(UsageError("--device cuda:x: no")) == ("bad_input", "--device cuda:x: no")
    assert describe_error(KeyError("x"))[0] == "internal"
