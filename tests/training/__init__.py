"""Helpers shared by the training tests: run a training script in a subprocess, offline and hermetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
SCRIPTS = {"vqvae": REPO / "training" / "train_vqvae.py", "vq_vit": REPO / "training" / "train_vq_vit.py"}
CONFIGS = REPO / "configs"


def script_env(data_dir: Path) -> dict:
    """Offline, with the repository importable and the offline datasets built once under `data_dir`."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        HF_VQ_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",  # 2 threads on 2 shared cores stall in OpenMP barriers when other work runs
    )
    return env


def script_command(task: str, *args: str, launcher: list[str] | None = None) -> list[str]:
    return [*(launcher or [PYTHON]), str(SCRIPTS[task]), *args]


def run_script(task: str, *args: str, data_dir: Path, timeout: float = 120, launcher: list[str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(script_command(task, *args, launcher=launcher), cwd=REPO, env=script_env(data_dir),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{task} run failed ({result.returncode}):\nSTDOUT\n{result.stdout[-3000:]}\nSTDERR\n{result.stderr[-5000:]}")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
