"""Smoke test of benchmarks/alternation_overhead.py: a minimal run completes and prints its ratio table
(no timing is asserted: it depends on the machine and its load)."""

import re
import subprocess
import sys

from . import REPO, script_env


def test_alternation_overhead_benchmark_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "alternation_overhead.py"), "--steps", "1", "--rounds", "1",
         "--batch_size", "4", "--inner", "1", "4"],
        cwd=REPO, env=script_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for model in ("VQ-VAE", "VQ-ViT"):
        assert model in result.stdout
    rows = re.findall(r"^\s+(joint|alternated k=\d)\s+([\d.]+)\s+([\d.]+)$", result.stdout, re.M)
    assert [r[0] for r in rows] == ["joint", "alternated k=1", "alternated k=4"] * 2
    assert all(float(r[2]) > 0 for r in rows)
