"""A residual VQ-VAE with quantizer dropout, trained jointly by `accelerate launch --multi_gpu --num_processes 2`
(gloo on CPU, DDP with find_unused_parameters=False): every level's codebook stays identical across ranks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from . import CONFIGS, RUN_TIMEOUT, launch_two, read_jsonl


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_residual_vqvae_with_quantizer_dropout_under_ddp(tmp_path, data_dir):
    out = tmp_path / "ddp-residual"
    launch_two("vqvae", out, "--config", str(CONFIGS / "tiny_vqvae.yaml"), "--max_steps", "8", "--log_with", "none",
               "--eval_every", "0", "--checkpoint.save_every", "0", "--debug_dump_rank_state",
               "--optimization", "joint", "--quantizer.type", "residual", "--quantizer.num_levels", "3",
               "--quantizer.quantizer_dropout", "true", "--quantizer.replace_after", "2", data_dir=data_dir)
    assert read_jsonl(out / "train_log.jsonl")[0]["num_processes"] == 2, "the launcher started one process"
    rank0, rank1 = (load_file(out / "debug" / f"rank{r}.safetensors") for r in range(2))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs across ranks"
    for q in range(3):  # k-means on every level, one LRU step per optimizer step on every level
        assert int(rank0[f"quantizer.levels.{q}.num_steps"]) == 8 and bool(rank0[f"quantizer.levels.{q}.initialized"])
        assert rank0[f"quantizer.levels.{q}.affine.scale"].abs().sum() > 0  # learnt: the codebooks took gradients
