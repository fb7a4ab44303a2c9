"""The ablations of Huh et al. (ICML 2023), sized for CPUs: Table 3 (VQ-VAE reconstruction), Table 2 (VQ-ViT
classification), Table 1 (collapse prevention with K-means vs Kaiming init) and the gradient gap (A.3).

Every run is one `RunSpec` (a plain dict, so it pickles to a spawned worker) executed in-process by
`run_one`: the model is an `hf_vq.VQVAEModel` / `hf_vq.VQViTForImageClassification`, the optimizers come from
`hf_vq.training.optim.build_optimizers` (AdamW without weight decay on the codebook, cosine schedule with
linear warmup, and the `AlternatingOptimizer` for `optimization: alternated`), each step is
`hf_vq.training.step.train_step` and the test metrics are `hf_vq.training.evaluate.evaluate`. Those pieces
expect an Accelerate `Accelerator`; a single CPU process needs none of its machinery, so `LocalAccelerator`
provides the few methods they call (no accumulation, no gather), which avoids Accelerate's per-process state
in pool workers. Data are held as uint8 tensors (one decode of the `hf_vq.data` offline datasets per
reproduction, cached in a .pt file) and batches are drawn by a seeded permutation, so a (spec, seed) pair is
deterministic on a given machine.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

# --------------------------------------------------------------------------------------------------------------
# Rows of the tables (quantizer overrides on top of the shared base settings)
# --------------------------------------------------------------------------------------------------------------

AFFINE = {"affine": "learnable"}
OPT = {"sync": True, "optimization": "alternated"}
REPLACE = {"replace": True}
L2 = {"distance": "cosine"}
STOCHASTIC = {"stochastic": True}
NORM = {"norm": "layernorm"}  # A.1: "placing the VQ layer after an explicit normalization layer"
FULL_EMA = {"affine": "ema", "covariance": "full"}  # beyond the paper: W = Σ_e^½ Σ_c^−½ (affine.py)
FULL_LEARNABLE = {"affine": "learnable", "covariance": "full"}

# Table 3: (row name, variant, paper CIFAR-10 MSE (1e-3) or None, paper perplexity or None). Each of the
# paper's rows runs without and with a LayerNorm before the quantizer; the full-covariance affine is ours.
_TABLE3_BASE = [
    ("VQVAE", {}, 5.65, 14.0),
    ("+ Affine", AFFINE, 5.15, 69.5),
    ("+ Affine + OPT", {**AFFINE, **OPT}, 4.00, 79.3),
    ("+ replace", REPLACE, 4.07, 109.8),
    ("+ Affine + OPT + replace", {**AFFINE, **OPT, **REPLACE}, 1.81, 290.9),
]
TABLE3_ROWS = [row for name, variant, mse, ppl in _TABLE3_BASE
               for row in ((name, variant, mse, ppl), (f"{name}, LN before VQ", {**variant, **NORM}, None, None))] + [
    ("+ Affine + OPT + replace + l2", {**AFFINE, **OPT, **REPLACE, **L2}, 1.74, 608.6),
    ("+ full Affine (learnable W)", FULL_LEARNABLE, None, None),
    ("+ full Affine (EMA, Σ_e^½Σ_c^−½)", FULL_EMA, None, None),
    ("+ full Affine (EMA) + OPT + replace", {**FULL_EMA, **OPT, **REPLACE}, None, None),
]
# Rows of Table 3 run on the second dataset too (the rest: colour patches only, to fit the budget).
TABLE3_SECOND_DATASET = {"VQVAE", "VQVAE, LN before VQ", "+ Affine", "+ Affine, LN before VQ", "+ Affine + OPT + replace",
                         "+ Affine + OPT + replace, LN before VQ", "+ full Affine (EMA, Σ_e^½Σ_c^−½)",
                         "+ full Affine (EMA) + OPT + replace"}

# ν sweep under alternated optimization (+ Affine + OPT with ν = 0, 0.01, 1), colour patches.
NU_ROWS = [(f"ν = {nu:g}", {**AFFINE, **OPT, "nu": nu}) for nu in (0.0, 0.01, 1.0)]

# Table 2 (ViT rows): (row name, variant, paper accuracy, paper perplexity). All K-means initialised.
TABLE2_ROWS = [
    ("Baseline", {}, 48.6, 112.9),
    ("+ affine", AFFINE, 52.8, 299.0),
    ("+ sync", {"sync": True}, 51.3, 88.8),
    ("+ alternated", {"optimization": "alternated"}, 53.1, 95.6),
    ("+ replace", REPLACE, 54.4, 598.8),
    ("all (affine + sync + alternated + replace)", {**AFFINE, **OPT, **REPLACE}, 56.7, 592.2),
]

# Table 1: (row name, variant, paper (active %, acc) with K-means, paper (active %, acc) with Kaiming init)
TABLE1_ROWS = [
    ("None", {}, (81.4, 67.0), (6.8, 59.3)),
    ("Stochastic", STOCHASTIC, (87.8, 67.3), (16.3, 60.8)),
    ("Replace (LRU)", REPLACE, (99.8, 69.3), (99.9, 68.6)),
    ("Affine (ours, not in the paper's Table 1)", AFFINE, None, None),
]

GAP_ROWS = [("joint", {}), ("alternated", {"optimization": "alternated"})]

# Diagnostics for the Table 3 targets (colour patches, not part of the default run; `--only diag`):
# (row name, variant, overrides of the vqvae settings block). Same settings as Table 3 otherwise.
_FULL = {**AFFINE, **OPT, **REPLACE, **L2}
_LONG = {"train": {"max_steps": 320, "warmup_steps": 32}}
_KMEANS = {"quantizer": {"kmeans_init": True}}
_SMALL_ALPHA = {"quantizer": {"commitment_weight": 1.0}}
DIAG_ROWS = [
    ("VQVAE, K-means init", {}, _KMEANS),
    ("+ Affine, K-means init", AFFINE, _KMEANS),
    ("+ Affine (EMA moment matching, A.12)", {"affine": "ema"}, {}),
    ("VQVAE, α/5 (1.0)", {}, _SMALL_ALPHA),
    ("+ Affine + OPT + replace + l2, α/5 (1.0)", _FULL, _SMALL_ALPHA),
    ("VQVAE, 2× steps (320)", {}, _LONG),
    ("+ Affine, 2× steps (320)", AFFINE, _LONG),
    ("+ Affine + OPT + replace + l2, 2× steps (320)", _FULL, _LONG),
]


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------

def _split_uint8(ds, mode: str) -> np.ndarray:
    """(N, C, H, W) uint8 of a split's PIL images in `mode` ("RGB" or "L")."""
    arrays = [np.asarray(image.convert(mode), dtype=np.uint8) for image in ds["image"]]
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def prepare_data(cache: str | os.PathLike, datasets_needed=("patches", "fashion_mnist")) -> str:
    """Decode the offline datasets once into uint8 tensors at `cache` (a .pt file); returns its path."""
    cache = Path(cache)
    if cache.is_file():
        stored = torch.load(cache, weights_only=True)
        if all(name in stored for name in datasets_needed):
            return str(cache)
    from ..data import load_image_dataset

    out = {}
    for name in datasets_needed:
        ds = load_image_dataset(f"offline:{name}", label_column="label")
        mode = "RGB" if name == "patches" else "L"
        out[name] = {
            split: (torch.from_numpy(_split_uint8(ds[split], mode)), torch.tensor(ds[split]["label"], dtype=torch.long))
            for split in ("train", "test")
        }
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    return str(cache)


_DATA: dict = {}


def _data(path: str, name: str) -> dict:
    if path not in _DATA:
        _DATA.clear()
        _DATA[path] = torch.load(path, weights_only=True)
    return _DATA[path][name]


def to_pixels(x: torch.Tensor, pad_to: int | None) -> torch.Tensor:
    """uint8 (B, C, H, W) → float in [-1, 1] (the `minus_one_one` normalisation of `hf_vq.data.ImageTransform`),
    zero-padded in pixel space (value −1, Fashion-MNIST's black background) to `pad_to`."""
    x = x.float() / 127.5 - 1.0
    if pad_to is not None and x.shape[-1] < pad_to:
        p = (pad_to - x.shape[-1]) // 2
        x = torch.nn.functional.pad(x, (p, pad_to - x.shape[-1] - p, p, pad_to - x.shape[-2] - p), value=-1.0)
    return x


# --------------------------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------------------------

def make_spec(settings: dict, *, table: str, row: str, dataset: str, task: str, variant: dict, seed: int,
              init: str = "kaiming", gap_every: int = 0, overrides: dict | None = None) -> dict:
    """A run: the shared `settings[task]` block (model, quantizer, train, eval) with `variant` applied
    (and `overrides` merged into the block first, for diagnostics)."""
    block = copy.deepcopy(settings[task])
    for section, values in (overrides or {}).items():
        block[section] = {**block[section], **values}
    q = dict(block["quantizer"])
    if "kmeans_init" not in (overrides or {}).get("quantizer", {}):
        q["kmeans_init"] = init == "kmeans"
    else:
        init = "kmeans" if q["kmeans_init"] else "kaiming"
    model = dict(block["model"])
    if variant.get("affine"):
        q["affine"] = variant["affine"]
        q["affine_lr_scale"] = block["affine_lr_scale"]
        q["affine_covariance"] = variant.get("covariance", "diagonal")
    if variant.get("sync"):
        q["sync_nu"] = variant.get("nu", block["sync_nu"])
    if variant.get("norm"):
        model["pre_quant_norm"] = variant["norm"]
    if variant.get("replace"):
        q["replace_after"] = block["replace_after"]
    if variant.get("distance"):
        q["distance"] = variant["distance"]
    train = dict(block["train"])
    train["optimization"] = variant.get("optimization", "joint")
    stochastic = block["stochastic_tau"] if variant.get("stochastic") else None
    return {
        "table": table, "row": row, "dataset": dataset, "task": task, "seed": seed, "init": init,
        "model": model, "quantizer": q, "train": train, "eval": dict(block["eval"]),
        "stochastic_tau": stochastic, "gap_every": gap_every, "data_path": settings.get("data_path"),
        "pad_to": block.get("pad_to", {}).get(dataset) if isinstance(block.get("pad_to"), dict) else None,
    }


def spec_key(spec: dict) -> str:
    """Identity of a run's computation (table/row names excluded), so shared rows run once."""
    keys = ("dataset", "task", "seed", "init", "model", "quantizer", "train", "eval", "stochastic_tau", "gap_every", "pad_to")
    return repr([(k, spec[k]) for k in keys])


def estimated_cost(spec: dict) -> float:
    """Relative cost (≈ seconds on one free core, measured on this machine's CPUs) for the ETA."""
    per_step = spec.get("cost_per_step", 0.08 if spec["task"] == "vqvae" else 0.14)
    steps = spec["train"]["max_steps"]
    gap = 2 * steps / spec["gap_every"] if spec["gap_every"] else 0
    return per_step * (steps + gap) + 3.0


# --------------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------------

class LocalAccelerator:
    """The subset of `accelerate.Accelerator` that `train_step` and `evaluate` use, for one CPU process."""

    device = torch.device("cpu")
    sync_gradients = True

    @contextlib.contextmanager
    def accumulate(self, model):
        yield

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, parameters, max_norm):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x


def build_model(spec: dict, num_channels: int):
    from .. import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification

    if spec["task"] == "vqvae":
        return VQVAEModel(VQVAEConfig(num_channels=num_channels, quantizer=spec["quantizer"], **spec["model"]))
    return VQViTForImageClassification(
        VQViTConfig(num_channels=num_channels, num_labels=10, quantizer=spec["quantizer"], **spec["model"])
    )


def run_one(spec: dict) -> dict:
    """Train and evaluate one spec; returns the spec's identity, the test metrics, timings and (for gap
    runs) the gradient-gap curve. Single-threaded."""
    from ..quantization import find_quantizers
    from ..metrics import collapse_diagnostics, gradient_gap, recorded_inputs
    from ..training.config import TrainConfig
    from ..training.evaluate import evaluate
    from ..training.optim import build_optimizers
    from ..training.step import seed_step, train_step

    torch.set_num_threads(1)
    start = time.time()
    seed = spec["seed"]
    torch.manual_seed(seed)
    data = _data(spec["data_path"], spec["dataset"])
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    ev = spec["eval"]
    max_test = ev.get("max_test_samples", {}).get(spec["dataset"]) if isinstance(ev.get("max_test_samples"), dict) else None
    if max_test is not None and max_test < len(test_x):
        pick = torch.linspace(0, len(test_x) - 1, max_test).round().long()  # fixed, spread over the split
        test_x, test_y = test_x[pick], test_y[pick]
    is_vae = spec["task"] == "vqvae"
    pad_to = spec["pad_to"]

    model = build_model(spec, num_channels=train_x.shape[1])
    model.train()
    t = spec["train"]
    cfg = TrainConfig(batch_size=t["batch_size"], max_steps=t["max_steps"], lr=t["lr"], weight_decay=t["weight_decay"],
                      betas=list(t["betas"]), scheduler="cosine", warmup_steps=t["warmup_steps"],
                      optimization=t["optimization"], codebook_optimizer="adam")
    steps, warmup = t["max_steps"], min(t["warmup_steps"], t["max_steps"])
    optimizers = build_optimizers(model, cfg, steps, warmup)
    accelerator = LocalAccelerator()
    vq = find_quantizers(model)[0]

    def batch_of(index):
        batch = {"pixel_values": to_pixels(train_x[index], pad_to)}
        if not is_vae:
            batch["labels"] = train_y[index]
        return batch

    gen = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(len(train_x), generator=gen), 0
    gap_batch = batch_of(torch.arange(min(t["batch_size"], len(train_x))))  # fixed batch for the gap curve
    encoder = [p for n, p in model.named_parameters() if n.startswith(("encoder.", "quant_conv."))] if is_vae else None

    def gap_now(step):
        def loss_fn(m):
            return m(pixel_values=gap_batch["pixel_values"]).reconstruction_loss
        return {"step": step, "gap": gradient_gap(model, loss_fn, encoder, seed=seed)}

    gaps, losses, diverged = [], [], False
    tau = spec["stochastic_tau"]
    for step in range(steps):
        if cursor + t["batch_size"] > len(order):
            order, cursor = torch.randperm(len(train_x), generator=gen), 0
        index = order[cursor:cursor + t["batch_size"]]
        cursor += t["batch_size"]
        if tau is not None:  # geometric annealing τ0 → τ1 (A.1: "geometric decay")
            frac = step / max(1, steps - 1)
            vq.stochastic_temperature = float(tau[0] * (tau[1] / tau[0]) ** frac)
        if spec["gap_every"] and step % spec["gap_every"] == 0:
            gaps.append(gap_now(step))
        seed_step(seed, step, 0)
        output, _ = train_step(accelerator, model, batch_of(index), optimizers)
        loss = float(output.loss.detach())
        if not math.isfinite(loss):
            diverged = True
            break
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            losses.append({"step": step, "loss": loss, "perplexity": float(output.perplexity.detach())})
    if spec["gap_every"] and not diverged:
        gaps.append(gap_now(steps))
    train_time = time.time() - start
    if tau is not None:
        vq.stochastic_temperature = None

    bs = ev["eval_batch_size"]
    loader = []
    for i in range(0, len(test_x), bs):
        batch = {"pixel_values": to_pixels(test_x[i:i + bs], pad_to)}
        if not is_vae:
            batch["labels"] = test_y[i:i + bs]
        loader.append(batch)
    with recorded_inputs(vq) as z_e:
        metrics = evaluate(model, loader, accelerator, "vqvae" if is_vae else "vq_vit")
    metrics.update(collapse_diagnostics(vq, z_e.vectors()))
    metrics.pop("code_histogram", None)
    if is_vae:
        # [-1, 1] pixels: MSE in [0, 1] pixel units (the usual reporting scale, e.g. the paper's CIFAR-10) is /4
        metrics["mse01"] = metrics["mse"] / 4.0
    return {
        "key": spec_key(spec), "table": spec["table"], "row": spec["row"], "dataset": spec["dataset"],
        "task": spec["task"], "seed": seed, "init": spec["init"], "metrics": metrics, "diverged": diverged,
        "train_curve": losses, "gap_curve": gaps, "train_seconds": train_time, "seconds": time.time() - start,
        "num_test": len(test_x), "steps": steps,
    }


__all__ = [
    "DIAG_ROWS", "GAP_ROWS", "LocalAccelerator", "NU_ROWS", "TABLE1_ROWS", "TABLE2_ROWS", "TABLE3_ROWS", "TABLE3_SECOND_DATASET", "build_model", "estimated_cost",
    "make_spec", "prepare_data", "run_one", "spec_key", "to_pixels",
]
