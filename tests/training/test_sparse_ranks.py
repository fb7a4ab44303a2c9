"""Two processes (`accelerate launch --multi_gpu --num_processes 2`, gloo on CPU) in the sparse regime.

Every rank's batch holds fewer vectors than the codebook has codes, so on every step most codes get no
vector on a rank (or on either rank): k-means initialises K codes from fewer pooled vectors than K (the
surplus codes are noisy copies of data vectors, kmeans.py), LRU replacement re-seeds hundreds of codes per
step from the pooled vectors of both ranks, the alternated inner codebook steps run on tiny (for the
VQ-ViT: partly empty) sub-batches, and an odd training set makes the sampler wrap around at the end of
each epoch. The ranks must not hang and must end with identical state.

`accelerate launch` pads the last batch (even_batches), so at this level the ranks always hold the same
number of vectors; a rank with no vectors at all is covered by tests/quantization/test_distributed.py.

Each run is bounded (`launch_two`): on a hang the launcher and its worker processes are killed and the
test fails with their output, instead of blocking the suite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hf_vq

from . import CONFIGS, RUN_TIMEOUT, launch_two, read_jsonl

STEPS = 8
COMMON = ["--max_steps", str(STEPS), "--eval_every", "0", "--log_every", "1", "--log_with", "none",
          "--checkpoint.save_every", "0", "--debug_dump_rank_state", "--quantizer.kmeans_init", "true",
          "--optimization", "alternated"]


def check_sparse_run(out: Path, *, vectors_per_example: int, train_examples: int, replace_after: int) -> dict:
    """Shared checks: the run finished on 2 processes with finite numbers, both ranks dumped identical
    state, and the quantizer really ran in the sparse regime (fewer vectors per step than codes)."""
    log = read_jsonl(out / "train_log.jsonl")
    start, end = log[0], log[-1]
    assert start["kind"] == "start" and start["num_processes"] == 2, "the launcher started one process"
    assert start["train_examples"] == train_examples and train_examples % 2 == 1
    assert start["steps_per_epoch"] == math.ceil(train_examples / 2)  # the last batch of each epoch wraps around
    assert end["kind"] == "end" and end["step"] == STEPS
    train = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))
    assert all(math.isfinite(v) for r in train for v in r.values() if isinstance(v, float))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_processes"] == 2 and results["steps"] == STEPS
    assert all(math.isfinite(v) for v in results.values() if isinstance(v, float))

    rank0, rank1 = (load_file(out / "debug" / f"rank{r}.safetensors") for r in range(2))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs across ranks"
    for key, value in rank0.items():
        assert not value.is_floating_point() or torch.isfinite(value).all(), f"{key} is not finite"

    q = {k.removeprefix("quantizer."): v for k, v in rank0.items() if k.startswith("quantizer.")}
    codebook_size = q["codebook_signal"].shape[0]
    per_rank = vectors_per_example  # batch_size 1
    pooled = 2 * per_rank
    assert pooled < codebook_size, "not the sparse regime: the two ranks together hold as many vectors as codes"
    # Each rank's batch can reach at most `per_rank` of the codes.
    assert all(r["active_codes"] <= per_rank / codebook_size + 1e-9 for r in train)
    assert bool(q["initialized"]) and int(q["num_steps"]) == STEPS
    # Hits are summed over both ranks: every vector of every step on each rank is counted once.
    assert int(q["code_usage"].sum()) == STEPS * pooled
    assert int((q["idle_steps"] == 0).sum()) <= pooled  # the last step hit at most `pooled` codes
    # LRU replaced every code idle for `replace_after` steps, so none stays idle longer...
    assert int(q["idle_steps"].max()) <= replace_after
    # ...and it replaced codes at the last training step (last_replaced). With replace_after 1 that is every
    # code the previous step's `pooled` vectors did not reach; with 2 the idle codes alternate between
    # being replaced and ageing one more step, so the check is only "some" (it holds for these seeds; the
    # run is deterministic).
    replaced = q["last_replaced"]
    if replace_after == 1:
        assert replaced.numel() >= codebook_size - pooled
    assert replaced.numel() > 0
    assert replaced.unique().numel() == replaced.numel() and int(replaced.max()) < codebook_size
    assert int(q["idle_steps"][replaced].max()) <= 1  # a replaced code restarts its idle count
    # K distinct codes: k-means with fewer vectors than codes never shrinks the codebook (noisy copies),
    # and replacements add noise. (The shared affine is a per-dimension map, so distinct rows of
    # codebook_signal are distinct effective codes.)
    assert torch.unique(q["codebook_signal"], dim=0).shape[0] == codebook_size
    return q


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_vqvae_fewer_latents_per_rank_than_codes(tmp_path, data_dir):
    """tiny_vqvae: 1 image per rank = 16×16 = 256 latents, 512 over both ranks, against 1024 codes; k-means
    on those 512; LRU every step (replace_after 1); alternated with 2 inner steps; 7 training images."""
    out = tmp_path / "vae"
    launch_two("vqvae", out, "--config", str(CONFIGS / "tiny_vqvae.yaml"), *COMMON, "--batch_size", "1",
               "--quantizer.codebook_size", "1024", "--quantizer.replace_after", "1", "--inner_steps", "2",
               "--data.max_train_samples", "7", data_dir=data_dir)
    config = hf_vq.VQVAEConfig.from_pretrained(out)
    grid = config.image_size // config.downsampling_factor
    assert grid == 16 and config.quantizer.codebook_size == 1024
    check_sparse_run(out, vectors_per_example=grid * grid, train_examples=7, replace_after=1)


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_vq_vit_fewer_tokens_per_rank_than_codes(tmp_path, data_dir):
    """tiny_vq_vit: 1 digit per rank = 4 patch tokens + [CLS] = 5 quantized tokens, 10 over both ranks,
    against 64 codes; LRU after 2 idle steps; alternated with 8 inner steps, more than the 5 tokens, so
    3 of each rank's inner sub-batches are empty; 9 training images."""
    out = tmp_path / "vit"
    launch_two("vq_vit", out, "--config", str(CONFIGS / "tiny_vq_vit.yaml"), *COMMON, "--batch_size", "1",
               "--quantizer.codebook_size", "64", "--quantizer.replace_after", "2", "--inner_steps", "8",
               "--data.max_train_samples", "9", data_dir=data_dir)
    config = hf_vq.VQViTConfig.from_pretrained(out)
    tokens = (config.image_size // config.patch_size) ** 2 + int(config.quantize_cls_token)
    assert tokens == 5 and config.quantizer.codebook_size == 64
    check_sparse_run(out, vectors_per_example=tokens, train_examples=9, replace_after=2)
