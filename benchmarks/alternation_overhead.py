"""Cost of the alternated optimization (§4.2) relative to joint training, per training step, on CPU.

The paper (§5.4) reports 1.05× for the fused single pass (one inner step whose search is reused by the outer
step) and about 2× with four inner steps (for ViT; ~1.5× for AlexNet). Here a training step is what
`hf_vq.training.train_step` does without Accelerate: forward, backward, optimizer step, LRU end_step, with
the optimizers `hf_vq.training.build_optimizers` builds. Joint and alternated variants run interleaved in one
process, each timed over the same batches; the reported time is the median step.

    python benchmarks/alternation_overhead.py [--steps 20] [--rounds 3] [--threads 1] [--inner 1 2 4]

Note: in hf_vq the inner steps run inside the quantizer on the encoder output z_e that the forward has
already computed (eq 17 does not involve the encoder's parameters), so an inner step costs a search over
its share of the vectors plus a codebook-sized backward, not another pass through the network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

try:
    import hf_vq
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import hf_vq

import torch

from hf_vq.quantization import end_step
from hf_vq.training.config import TrainConfig
from hf_vq.training.optim import build_optimizers
from hf_vq.training.step import prepare_quantizers

QUANTIZER = {"codebook_size": 1024, "affine": "learnable", "affine_lr_scale": 10.0, "sync_nu": 0.01, "beta": 0.995,
             "replace_after": 20, "kmeans_init": True}


def vqvae(batch_size: int):
    config = hf_vq.VQVAEConfig(image_size=32, block_out_channels=[32, 64], layers_per_block=1, latent_channels=32,
                               mid_block_add_attention=False, quantizer={**QUANTIZER, "commitment_weight": 1.6})
    return (lambda: hf_vq.VQVAEModel(config)), {"pixel_values": torch.randn(batch_size, 3, 32, 32)}, \
        "VQ-VAE 32×32, widths [32, 64], 16×16 latents of 32 dims, K=1024"


def vq_vit(batch_size: int):
    config = hf_vq.VQViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=128, num_hidden_layers=6,
                               num_attention_heads=4, intermediate_size=256, quantizer_layer=3, num_labels=10,
                               quantizer={**QUANTIZER, "commitment_weight": 64.0})
    batch = {"pixel_values": torch.randn(batch_size, 3, 32, 32), "labels": torch.randint(0, 10, (batch_size,))}
    return (lambda: hf_vq.VQViTForImageClassification(config)), batch, \
        "VQ-ViT 32×32, patch 4 (65 tokens), 6 blocks of 128, quantizer after block 3, K=1024"


def make_variant(build, optimization: str, inner_steps: int):
    torch.manual_seed(0)
    model = build().train()
    prepare_quantizers(model)
    cfg = TrainConfig(lr=1e-3, optimization=optimization, inner_steps=inner_steps)
    return model, build_optimizers(model, cfg, total_steps=10_000, warmup_steps=0)


def step(model, optimizers, batch) -> None:
    out = model(**batch)
    out.loss.backward()
    optimizers.optimizer.step()
    optimizers.optimizer.zero_grad(set_to_none=True)
    for scheduler in optimizers.schedulers():
        scheduler.step()
    end_step(model)


def run(name: str, build, batch, steps: int, rounds: int, inner: list[int]) -> dict[str, float]:
    variants = {"joint": make_variant(build, "joint", 1)}
    for k in inner:
        variants[f"alternated k={k}"] = make_variant(build, "alternated", k)
    for model, optimizers in variants.values():  # warm-up: k-means init, allocator, first LRU steps
        for _ in range(3):
            step(model, optimizers, batch)
    times = {key: [] for key in variants}
    for _ in range(rounds):
        for key, (model, optimizers) in variants.items():  # interleaved, so load changes hit all variants
            for _ in range(steps):
                start = time.perf_counter()
                step(model, optimizers, batch)
                times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(ts) for key, ts in times.items()}
    print(f"\n{name}")
    print(f"  {'variant':18s} {'ms/step':>9s} {'× joint':>8s}")
    for key, median in medians.items():
        print(f"  {key:18s} {1000 * median:9.1f} {median / medians['joint']:8.2f}")
    return medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is stable on a shared CPU)")
    parser.add_argument("--inner", type=int, nargs="+", default=[1, 2, 4], help="inner steps k to compare")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, median of "
          f"{args.rounds}×{args.steps} steps per variant; paper (§5.4): fused 1.05×, k=4 about 2×")
    for model in (vqvae, vq_vit):
        build, batch, name = model(args.batch_size)
        run(name, build, batch, args.steps, args.rounds, args.inner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
