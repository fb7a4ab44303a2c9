"""Smoke test of benchmarks/quantizer.py: the --quick run completes and prints its ratio lines.

No timing value is asserted: the numbers depend on the machine and its load.
"""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "benchmarks", "quantizer.py")


@pytest.mark.timeout(150)
def test_quantizer_benchmark_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for prefix in ("ratio diffusers/hf_vq", "ratio vqp/hf_vq", "ratio hf_vq/GEMM"):
        assert prefix in out, f"missing {prefix!r} line in:\n{out}"
    assert "hf_vq (N,D) default" in out and "GEMM floor" in out
    assert "where hf_vq's step goes" in out
    assert "extra above input" in out
    # vector-quantize-pytorch is optional: either its row or the install hint is printed
    assert (
        "vector-quantize-pytorch VectorQuantize" in out or "not installed: pip install vector-quantize-pytorch" in out
    )
    results = json.loads(out_json.read_text())
    assert results["config"]["quick"] is True
    assert "hf_vq (N,D) default" in results["rows"]
    assert set(results["ratios"]) >= {"diffusers/hf_vq (both (B,D,H,W))", "vqp/hf_vq (both channel-last)",
                                      "hf_vq/GEMM (channel-last default)"}


def test_vqp_row_skipped_when_not_installed(monkeypatch):
    """vector-quantize-pytorch is an optional comparison: without it the row becomes the install hint."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("_bench_quantizer", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)  # import now raises ImportError
    row = bench.vqp_row(torch.randn(4096, 8), 8, 16, reps=1, warmup=0)
    assert row == "not installed: pip install vector-quantize-pytorch"
