"""Helpers shared by the training tests: run a training script in a subprocess, offline and hermetic."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil  # an Accelerate dependency
import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
SCRIPTS = {"vqvae": REPO / "training" / "train_vqvae.py", "vq_vit": REPO / "training" / "train_vq_vit.py"}
CONFIGS = REPO / "hf_vq" / "recipes"
RUN_TIMEOUT = 150  # seconds per 2-process launch; a tiny run takes ~20 s on 2 CPU cores, nearly all start-up


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
        raise AssertionError(
            f"{task} run failed ({result.returncode}):\nSTDOUT\n{result.stdout[-3000:]}\n"
            f"STDERR\n{result.stderr[-5000:]}"
        )
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(proc: subprocess.Popen) -> None:
    """End the launcher and every process it started. The workers run in sessions of their own (torch
    elastic starts them with start_new_session), so they are found by parentage, not by process group:
    SIGTERM first (the launcher then stops its workers), SIGKILL whatever is left."""
    try:
        family = [psutil.Process(proc.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


def launch_two(task: str, out: Path, *args: str, data_dir: Path) -> str:
    """Run `task` on 2 processes; fail (never block) past RUN_TIMEOUT. Returns stdout + stderr.

    Output goes to a file, not a pipe: a stray worker holding a pipe open would block the reader."""
    launcher = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    log_path = out.parent / f"{out.name}.launch.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(script_command(task, "--output_dir", str(out), *args, launcher=launcher), cwd=REPO,
                                env=script_env(data_dir), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            pytest.fail(f"{task} on 2 processes did not finish in {RUN_TIMEOUT} s (hang?):\n"
                        f"{log_path.read_text()[-5000:]}")
        finally:  # also when pytest-timeout interrupts the wait
            if proc.poll() is None:
                _kill_tree(proc)
    output = log_path.read_text()
    assert proc.returncode == 0, f"{task} on 2 processes failed ({proc.returncode}):\n{output[-6000:]}"
    return output
