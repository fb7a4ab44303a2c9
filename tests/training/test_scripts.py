"""The training scripts end to end, in subprocesses, offline: outputs, resume after SIGKILL, two processes,
gradient accumulation + bf16, and the errors that stop a bad run before training."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from . import ACCELERATE, CONFIGS, REPO, read_jsonl, run_script, script_command, script_env

PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
VAE_CONFIG = str(CONFIGS / "tiny_vqvae.yaml")
VIT_CONFIG = str(CONFIGS / "tiny_vq_vit.yaml")
RESUME_STEPS = ["--max_steps", "40", "--checkpoint.save_every", "4", "--eval_every", "20", "--log_with", "none"]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-vq-data")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, data_dir) -> Path:
    """The tiny VQ-VAE trained once without interruption (40 steps, a checkpoint every 4)."""
    out = tmp_path_factory.mktemp("vae") / "run"
    run_script("vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), *RESUME_STEPS, data_dir=data_dir)
    return out


def assert_model_folder(out: Path, metric: str, plots: set[str]) -> dict:
    top = {p.name for p in out.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "train_log.jsonl",
            "training_config.yaml", "eval_results.json"} <= top
    pickles = [p for p in out.rglob("*") if p.suffix in PICKLES and "checkpoints" not in p.parts]
    assert not pickles, f"pickle files outside checkpoints/: {pickles}"
    assert {p.name for p in (out / "plots").glob("*.png")} == plots
    for png in (out / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    results = json.loads((out / "eval_results.json").read_text())
    for key in (metric, "perplexity", "active_codes", "quantization_error", "loss"):
        assert math.isfinite(results[key]), key
    card = (out / "README.md").read_text()
    assert f"type: {metric}" in card and "perplexity" in card and "plots/training_curves.png" in card
    assert f"{results['perplexity']:.6g}"[:5] in card  # the measured numbers, not placeholders
    config = json.loads((out / "config.json").read_text())
    assert config["quantizer"]["affine"] == "learnable" and config["quantizer"]["kmeans_init"] is True
    log = read_jsonl(out / "train_log.jsonl")
    assert log[0]["kind"] == "start" and log[-1]["kind"] == "end"
    train = [r for r in log if r["kind"] == "train"]
    assert all(math.isfinite(r["loss"]) for r in train)
    assert [r for r in log if r["kind"] == "eval"][-1][metric] == pytest.approx(results[metric])
    return results


def test_vqvae_end_to_end(vae_run):
    results = assert_model_folder(vae_run, "mse", {"training_curves.png", "code_usage.png", "reconstructions.png"})
    assert results["psnr"] > 0 and 0 < results["active_codes"] <= 1 and results["steps"] == 40
    train = [r for r in read_jsonl(vae_run / "train_log.jsonl") if r["kind"] == "train"]
    first, last = sum(r["mse"] for r in train[:2]) / 2, sum(r["mse"] for r in train[-2:]) / 2
    assert last < first, f"reconstruction error did not drop: {first} -> {last}"
    state = load_file(vae_run / "model.safetensors")
    assert int(state["quantizer.num_steps"]) == 40  # one LRU step per optimizer step
    assert [p.name for p in sorted((vae_run / "checkpoints").iterdir())] == ["step_000000036", "step_000000040"]


def test_vq_vit_end_to_end(tmp_path, data_dir):
    out = tmp_path / "vit"
    run_script("vq_vit", "--config", VIT_CONFIG, "--output_dir", str(out), data_dir=data_dir)
    results = assert_model_folder(out, "accuracy", {"training_curves.png", "code_usage.png"})
    assert 0 <= results["accuracy"] <= 1
    train = [r for r in read_jsonl(out / "train_log.jsonl") if r["kind"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"], "classification loss did not drop"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["3"] == "3" and config["quantizer_layer"] == 1
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 8, "width": 8} and processor["image_mean"] == [0.5]
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))  # log_with auto: tensorboard is installed


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended ({proc.returncode}) before {path.name} appeared:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def test_resume_after_sigkill_reaches_the_uninterrupted_result(vae_run, tmp_path, data_dir):
    out = tmp_path / "killed"
    args = ["--config", VAE_CONFIG, "--output_dir", str(out), *RESUME_STEPS]
    proc = subprocess.Popen(script_command("vqvae", *args), cwd=REPO, env=script_env(data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "checkpoints" / "step_000000008" / "hf_vq_checkpoint.json", proc, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "eval_results.json").exists(), "the run finished before it was killed"
    checkpoints = out / "checkpoints"
    # a half-written checkpoint, as a kill during save_state leaves it: never resumed, removed by the next save
    (checkpoints / "step_000000039.tmp").mkdir(exist_ok=True)
    (checkpoints / "step_000000039.tmp" / "model.safetensors").write_bytes(b"partial")
    done = sorted(p.name for p in checkpoints.iterdir() if not p.name.endswith(".tmp"))
    assert done and int(done[-1][5:]) >= 8
    # no custom_checkpoint_*.pkl: Accelerate unpickles those with weights_only=False (its other files load
    # with weights_only=True)
    assert not list((checkpoints / done[-1]).glob("custom_checkpoint_*")) and (checkpoints / done[-1] / "hf_vq_extra_state.pt").is_file()

    result = run_script("vqvae", *args, "--resume", data_dir=data_dir)
    assert f"resumed from {checkpoints / done[-1]}" in result.stdout and "warning" not in result.stdout
    assert not (checkpoints / "step_000000039.tmp").exists()

    # same final numbers and weights as the run that was never interrupted
    a = json.loads((vae_run / "eval_results.json").read_text())
    b = json.loads((out / "eval_results.json").read_text())
    for key in ("mse", "psnr", "perplexity", "active_codes", "quantization_error", "loss"):
        assert b[key] == a[key], key
    wa, wb = load_file(vae_run / "model.safetensors"), load_file(out / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key  # bitwise: same ops, same order, same thread count
    # the log reads as one run: each optimizer step logged once
    steps = [r["step"] for r in read_jsonl(out / "train_log.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 40


@pytest.mark.timeout(240)
def test_two_processes_keep_identical_codebooks(tmp_path, data_dir):
    """`accelerate launch --multi_gpu --num_processes 2` (gloo on CPU): k-means init, LRU replacement, learnable
    affine and alternated optimization; every rank must end with the same quantizer state and weights."""
    out = tmp_path / "ddp"
    launcher = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    run_script("vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), "--max_steps", "16", "--log_with", "none",
               "--debug_dump_rank_state", "--quantizer.replace_after", "2", "--inner_steps", "2",
               launcher=launcher, data_dir=data_dir, timeout=220)
    start = read_jsonl(out / "train_log.jsonl")[0]
    assert start["num_processes"] == 2, "the launcher started one process"
    rank0, rank1 = (load_file(out / "debug" / f"rank{r}.safetensors") for r in range(2))
    assert rank0.keys() == rank1.keys()
    quantizer_keys = [k for k in rank0 if k.startswith("quantizer.")]
    assert {"quantizer.codebook_signal", "quantizer.affine.scale", "quantizer.idle_steps", "quantizer.code_usage",
            "quantizer.num_steps", "quantizer.initialized"} <= set(quantizer_keys)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs across ranks"
    assert int(rank0["quantizer.num_steps"]) == 16 and bool(rank0["quantizer.initialized"])
    assert not torch.equal(rank0["quantizer.affine.scale"], torch.zeros_like(rank0["quantizer.affine.scale"]))


def test_gradient_accumulation_and_bf16(tmp_path, data_dir):
    out = tmp_path / "accum"
    run_script("vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), "--max_steps", "6",
               "--gradient_accumulation_steps", "2", "--mixed_precision", "bf16", "--log_with", "none",
               "--log_every", "1", "--checkpoint.save_every", "0", "--eval_every", "0", data_dir=data_dir)
    log = read_jsonl(out / "train_log.jsonl")
    assert log[0]["mixed_precision"] == "bf16"
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    state = load_file(out / "model.safetensors")
    assert int(state["quantizer.num_steps"]) == 6  # 12 micro-batches, 6 optimizer steps
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    assert math.isfinite(json.loads((out / "eval_results.json").read_text())["mse"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--quantizer.betta", "0.9"], "did you mean 'model.quantizer.beta'"),
        (["--resume"], "no complete checkpoint"),
        (["--image_size", "16", "--block_out_channels", "[16]"], "train images are 32×32 but model.image_size is 16"),
        (["--data.image_column", "picture"], "has no column 'picture'"),
    ],
)
def test_bad_inputs_stop_before_training(tmp_path, data_dir, args, message):
    out = tmp_path / "bad"
    result = run_script("vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), *args, data_dir=data_dir, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (out / "train_log.jsonl").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
