"""Smoke tests of benchmarks/quantizer.py (the --quick run completes and prints its lines) and of
benchmarks/speed_table.py (README's table is generated from that run's JSON).

No timing value is asserted: the numbers depend on the machine and its load.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "benchmarks", "quantizer.py")
TABLE_SCRIPT = os.path.join(REPO_ROOT, "benchmarks", "speed_table.py")


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out_json = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=240, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out_json.read_text()), out_json


@pytest.mark.timeout(300)
def test_quantizer_benchmark_quick(quick_run):
    out, results, _ = quick_run
    for prefix in ("ratio diffusers/hf_vq", "ratio vqp/hf_vq", "ratio hf_vq/GEMM", "ratio hf_vq torch path/GEMM"):
        assert prefix in out, f"missing {prefix!r} line in:\n{out}"
    assert "hf_vq (N,D)" in out and "GEMM floor" in out and "blocks of 64 " in out
    assert "where hf_vq's native step goes" in out
    assert "extra above input" in out
    # vector-quantize-pytorch is optional: either its row or the install hint is printed
    hint = "not installed: pip install vector-quantize-pytorch"
    assert "vector-quantize-pytorch VectorQuantize" in out or hint in out
    assert results["config"]["quick"] is True
    (run,) = results["runs"]
    assert run["threads"] == 1 and run["k"] == 1024
    assert {"hf_vq (N,D)", "hf_vq (N,D) torch path", "hf_vq (B,D,H,W) channel_first"} <= set(run["rows"])
    assert set(run["ratios"]) >= {"diffusers/hf_vq (both (B,D,H,W))", "vqp/hf_vq (both channel-last)", "hf_vq/GEMM"}
    # the floor is the best candidate
    assert run["gemm"]["min_ms"] == min(c["min_ms"] for c in run["gemm"]["candidates"].values())
    assert results["environment"]["cpu"] and results["environment"]["loadavg_start"] is not None


@pytest.mark.timeout(300)
def test_readme_speed_table_is_generated_from_the_json(quick_run, tmp_path):
    _, results, out_json = quick_run
    table = _load(TABLE_SCRIPT, "_speed_table")
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{table.BEGIN}\nold hand-typed numbers\n{table.END}\nafter\n")
    proc = subprocess.run([sys.executable, TABLE_SCRIPT, str(out_json), "--readme", str(readme)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert "old hand-typed numbers" not in text and text.startswith("# title\n\nbefore\n") and text.endswith("after\n")
    rendered = text.split(table.BEGIN)[1].split(table.END)[0]
    run = results["runs"][0]
    assert results["environment"]["cpu"] in rendered  # the machine, the load and the thread count are named
    assert f"{results['environment']['loadavg_start'][0]:.1f}" in rendered
    load = f"{run['loadavg_start'][0]:.1f} → {run['loadavg_end'][0]:.1f}"
    assert f"| {run['threads']} | {run['k']:,} | {load} |" in rendered
    assert f"{run['ratios']['hf_vq/GEMM']['min']:.2f}×" in rendered
    # regenerating is idempotent; a README without the markers is refused
    assert table.replace_between_markers(text, table.render(results)) == text
    with pytest.raises(ValueError, match="markers"):
        table.replace_between_markers("no markers here", "table")


def test_vqp_row_skipped_when_not_installed(monkeypatch):
    """vector-quantize-pytorch is an optional comparison: without it the row becomes the install hint."""
    import torch

    bench = _load(SCRIPT, "_bench_quantizer")
    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)  # import now raises ImportError
    row = bench.vqp_row(torch.randn(4096, 8), 8, 16, reps=1, warmup=0)
    assert row == "not installed: pip install vector-quantize-pytorch"
