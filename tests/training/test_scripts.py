"""The training scripts end to end, in subprocesses, offline: outputs, resume after SIGKILL, two processes,
gradient accumulation + bf16, and the errors that stop a bad run before training."""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vq.training.checkpoint import complete_checkpoints

from . import ACCELERATE, CONFIGS, REPO, RUN_TIMEOUT, launch_two, read_jsonl, run_script, script_command, script_env

PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
VAE_CONFIG = str(CONFIGS / "tiny_vqvae.yaml")
VIT_CONFIG = str(CONFIGS / "tiny_vq_vit.yaml")
RESUME_STEPS = ["--max_steps", "40", "--checkpoint.save_every", "4", "--eval_every", "20", "--log_with", "none"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, data_dir) -> Path:
    """The tiny VQ-VAE trained once without interruption (40 steps, a checkpoint every 4)."""
    out = tmp_path_factory.mktemp("vae") / "run"
    run_script("vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), *RESUME_STEPS, data_dir=data_dir)
    return out


def config_dim(out: Path) -> int:
    config = json.loads((out / "config.json").read_text())
    return config.get("latent_channels") or config["hidden_size"]


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
    # collapse diagnostics (learnable affine in both configs): logged with every eval, plotted with the curves
    assert 1 <= results["ze_effective_rank"] <= config_dim(out) and 0 <= results["codes_in_reach"] <= 1
    assert 0 < results["affine_scale_min"] <= results["affine_scale_mean"] <= results["affine_scale_max"]
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
    console = run_script("vq_vit", "--config", VIT_CONFIG, "--output_dir", str(out), data_dir=data_dir).stdout
    results = assert_model_folder(out, "accuracy", {"training_curves.png", "code_usage.png"})
    # the console: what runs (from the Accelerator and the data), the task loss apart from the commitment, evals
    assert "on 1 process(es) (cpu), precision: fp32\ndata: 256 train examples from 'offline:digits' split 'train', " \
           "64 test examples from 'offline:digits' split 'test'" in console
    log = read_jsonl(out / "train_log.jsonl")
    record = next(r for r in log if r["kind"] == "train" and r["step"] == 5)
    assert f"train step 5/40: task_loss {record['task_loss']:.4g} | commitment {record['commitment']:.4g} | " \
           f"perplexity {record['perplexity']:.4g} | active_codes {record['active_codes']:.4g}" in console
    alpha = json.loads((out / "config.json").read_text())["quantizer"]["commitment_weight"]
    # the logged loss is the task loss plus α·L_cmt (means over the same batches)
    assert record["loss"] == pytest.approx(record["task_loss"] + alpha * record["commitment"], rel=1e-4)
    evals = [r for r in log if r["kind"] == "eval"]
    assert [line.split(":")[0] for line in console.splitlines() if line.startswith("eval")] == \
        [f"eval step {r['step']}/40" for r in evals] and len(evals) == 2
    assert f"eval step 40/40: accuracy {evals[-1]['accuracy']:.4g} | perplexity" in console
    assert 0 <= results["accuracy"] <= 1
    train = [r for r in read_jsonl(out / "train_log.jsonl") if r["kind"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"], "classification loss did not drop"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["3"] == "3" and config["quantizer_layer"] == 1
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 8, "width": 8} and processor["image_mean"] == [0.5]
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))  # log_with auto: tensorboard is installed


class _Run:
    """A training script in a subprocess whose stdout is read line by line (to know when training started)."""

    def __init__(self, args: list[str], data_dir: Path):
        env = {**script_env(data_dir), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(script_command("vqvae", *args), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.training = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("training "):
                self.training.set()
        self.training.set()  # ended (or died) before training: wake the waiter

    def wait_until(self, ready, timeout: float) -> bool:
        """Poll `ready()` every millisecond; False if the run ended first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, "".join(self.lines)[-3000:]
            time.sleep(0.001)
        return True

    def kill(self) -> bool:
        """SIGKILL; False if the run had already ended."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        return True

    def output(self) -> str:
        self.proc.wait(timeout=120)
        time.sleep(0.05)  # let the reader thread drain the pipe
        return "".join(self.lines)


def assert_intact(checkpoint: Path) -> None:
    """A complete checkpoint: marker, weights, optimizer and extra state all load (nothing unpickled)."""
    info = json.loads((checkpoint / "hf_vq_checkpoint.json").read_text())
    assert info["step"] == int(checkpoint.name[5:])
    assert load_file(checkpoint / "model.safetensors")
    torch.load(checkpoint / "optimizer.bin", weights_only=True)
    assert torch.load(checkpoint / "hf_vq_extra_state.pt", weights_only=True)
    # no custom_checkpoint_*.pkl: Accelerate unpickles those with weights_only=False
    assert not list(checkpoint.glob("custom_checkpoint_*"))


def test_sigkill_at_random_instants_always_resumes_to_the_uninterrupted_result(vae_run, tmp_path, data_dir):
    """A pre-emptible job: the same `--resume auto` command, killed with SIGKILL at random instants (during
    steps, in the middle of a checkpoint write, in the final save), restarted until it finishes. Every restart
    resumes from the newest complete checkpoint, and the result is bit-identical to the uninterrupted run."""
    out = tmp_path / "killed"
    checkpoints = out / "checkpoints"
    args = ["--config", VAE_CONFIG, "--output_dir", str(out), *RESUME_STEPS, "--resume", "auto"]
    rng = random.Random(0)

    def writing() -> bool:
        return checkpoints.is_dir() and any(p.name.endswith(".tmp") and not p.name.endswith(".old.tmp")
                                            for p in checkpoints.iterdir())

    trials = [("during steps", None), ("writing a checkpoint", writing), ("during steps", None),
              ("in the final save", lambda: (out / "plots").is_dir())]
    expected_resume, killed = None, []
    for where, ready in trials:
        run = _Run(args, data_dir)
        assert run.training.wait(timeout=120) and run.proc.poll() is None, run.output()[-3000:]
        if ready is None:
            time.sleep(rng.uniform(0.0, 2.5))
        elif not run.wait_until(ready, timeout=60):
            raise AssertionError(f"the run ended before it was {where}:\n{run.output()[-3000:]}")
        assert run.kill(), f"the run ended before the kill {where}"
        log = run.output()
        # each restart resumed from the newest complete checkpoint the previous kill left (or started fresh)
        assert (f"resumed from {expected_resume} " in log) if expected_resume else "resumed from" not in log, log[
            -3000:
        ]
        assert "warning" not in log
        done = complete_checkpoints(out)
        for checkpoint in done:
            assert_intact(checkpoint)
        killed.append((where, [p.name for p in checkpoints.iterdir()] if checkpoints.is_dir() else []))
        expected_resume = done[-1] if done else None
    assert any(name.endswith(".tmp") for _, names in killed[1:2] for name in names), killed  # a half-written one
    assert not (out / "eval_results.json").exists() or expected_resume is not None

    run = _Run(args, data_dir)
    log = run.output()
    assert run.proc.returncode == 0, log[-3000:]
    assert f"resumed from {expected_resume} " in log and "warning" not in log
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]  # removed by the next save

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


def test_a_torn_log_line_and_a_half_written_checkpoint_are_skipped_on_resume(vae_run, tmp_path, data_dir):
    """What a kill in the middle of a write leaves: a `.tmp` checkpoint (never resumed, removed by the next
    save) and a partial last line in train_log.jsonl (dropped)."""
    out = tmp_path / "torn"
    shutil.copytree(vae_run, out)
    checkpoints = out / "checkpoints"
    shutil.rmtree(checkpoints / "step_000000040")
    (checkpoints / "step_000000039.tmp").mkdir()
    (checkpoints / "step_000000039.tmp" / "model.safetensors").write_bytes(b"partial")
    with open(out / "train_log.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 39, "lo')
    result = run_script("vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), *RESUME_STEPS, "--resume",
                        data_dir=data_dir)
    assert f"resumed from {checkpoints / 'step_000000036'} " in result.stdout
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_000000036", "step_000000040"]
    steps = [r["step"] for r in read_jsonl(out / "train_log.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    assert load_file(out / "model.safetensors").keys() == load_file(vae_run / "model.safetensors").keys()


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_two_processes_keep_identical_codebooks(tmp_path, data_dir):
    """`accelerate launch --multi_gpu --num_processes 2` (gloo on CPU): k-means init, LRU replacement, learnable
    affine and alternated optimization; every rank must end with the same quantizer state and weights."""
    out = tmp_path / "ddp"
    launch_two("vqvae", out, "--config", VAE_CONFIG, "--max_steps", "16", "--log_with", "none",
               "--debug_dump_rank_state", "--quantizer.replace_after", "2", "--inner_steps", "2", data_dir=data_dir)
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
    result = run_script(
        "vqvae", "--config", VAE_CONFIG, "--output_dir", str(out), *args, data_dir=data_dir, check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (out / "train_log.jsonl").exists()


def test_accelerate_launch_cpu_with_two_processes_is_refused(tmp_path, data_dir):
    """`accelerate launch --cpu --num_processes 2` starts one process (Accelerate 1.x); the run says so and stops
    before anything is written, instead of training alone while the user expects two processes."""
    out = tmp_path / "cpu2"
    launcher = [ACCELERATE, "launch", "--cpu", "--num_processes", "2", "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "hf_vq.train"]
    result = subprocess.run([*launcher, "vqvae", "--config", VAE_CONFIG, "--output_dir", str(out)], cwd=tmp_path,
                            env=script_env(data_dir), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode != 0
    assert "error: `accelerate launch --cpu --num_processes N` starts a single process" in result.stderr
    assert not out.exists()
