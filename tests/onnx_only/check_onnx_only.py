"""Run in a venv that has only `edgeval[onnx]`: `edgeval check` must work on ONNX without torch/transformers/TF.

Usage: python check_onnx_only.py FIXTURE_DIR   (made by build_fixture.py). Prints 'onnx-only: N passed, N failed'.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeval", *args], capture_output=True, text=True, timeout=600)


def main(fixture: Path) -> int:
    results: list[tuple[str, bool, str]] = []
    heavy = [m for m in ("torch", "transformers", "tensorflow") if importlib.util.find_spec(m)]
    results.append(("no torch/transformers/tensorflow installed", not heavy, f"found {heavy}"))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        proc = run("check", str(fixture / "pruned" / "model.onnx"), "--baseline", str(fixture / "dense" / "model.onnx"),
                   "--policy", str(fixture / "policy.yaml"), "--validators", "size,latency,perplexity",
                   "--report", str(report))
        results.append(("check exits 0 or 1", proc.returncode in (0, 1), proc.stderr[-2000:]))
        doc = json.loads(report.read_text()) if report.exists() else {}
        results.append(("report written with a verdict", doc.get("verdict") in ("pass", "blocked"), str(doc)[:500]))
        sparsity = doc.get("results", {}).get("size", {}).get("weight_sparsity")
        results.append(("size validator saw the pruning", bool(sparsity) and sparsity > 0.1, f"sparsity={sparsity}"))
        kv_report = Path(tmp) / "kv.json"
        proc = run("check", str(fixture / "pruned-kv" / "model.onnx"),
                   "--baseline", str(fixture / "dense" / "model.onnx"),
                   "--validators", "bbq", "--bbq-data", str(fixture / "bbq"), "--report", str(kv_report))
        kv = json.loads(kv_report.read_text()) if kv_report.exists() else {}
        compute = kv.get("results", {}).get("bbq", {}).get("compute", {})
        cand, base = compute.get("candidate", {}), compute.get("baseline", {})
        results.append(("BBQ on a --kv-cache export shares prefixes without torch",
                        proc.returncode in (0, 1, 5) and kv.get("verdict") in ("pass", "blocked", "inconclusive")
                        and cand.get("kv_cache") is True
                        and 0 < cand.get("tokens_run", 0) < cand.get("prompt_tokens", 0)
                        and base.get("kv_cache") is False, proc.stderr[-2000:] + str(compute)))
        garbage = Path(tmp) / "g.onnx"
        garbage.write_bytes(b"not a model")
        proc = run("check", str(garbage), "--validators", "size", "--report", str(Path(tmp) / "g.json"))
        results.append(("garbage model exits 3 with one line", proc.returncode == 3 and "Traceback" not in proc.stderr,
                        proc.stderr))
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}: {name}" + ("" if ok else f"\n    {detail}"))
    failed = sum(not ok for _, ok, _ in results)
    print(f"onnx-only: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
