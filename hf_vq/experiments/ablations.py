"""The ablations of Huh et al. (ICML 2023), sized for CPUs: Table 3 (VQ-VAE reconstruction), Table 2 (VQ-ViT
classification), Table 1 (collapse prevention with K-means vs Kaiming init) and the gradient gap (A.3).

Every run is one `RunSpec` (a plain dict, so it pickles to a spawned worker) that `run_one` trains with
`hf_vq.training.train`, the loop of the training scripts, in one process with a real Accelerator: the
models, optimizers (AdamW without weight decay on the codebook, cosine schedule with linear warmup, the
`AlternatingOptimizer` for `optimization: alternated`), step and evaluation are the scripts'. What a run adds
comes in through its data and a `Callback` (`RunCurves`: τ annealing, gradient gap, loss curve, divergence).
Data are held as uint8 tensors (one decode of the `hf_vq.data` offline datasets per reproduction, cached in a
.pt file) and batches are drawn by a seeded permutation, so a (spec, seed) pair is deterministic on a given
machine.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..metrics import gradient_gap
from ..quantization import find_quantizers
from ..quantization.registry import quantizer_type
from ..training import TASKS, Callback, PreparedData, train
from ..training.config import EvalConfig, LoggingConfig, RunConfig, TrainConfig
from .peers import peer_model

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

# The head-to-head of the post-2023 fixes (issue 14, `--only frontier`): the Table 3 VQ-VAE on both datasets with
# K = 512 codes, i.e. 9 bits per latent for every row (FSQ 8·8·8 = 512 grid points, LFQ 2^9, residual VQ 3 levels
# of 8 codes); same steps, schedule, α and seeds for all. (row name, variant) — `variant["quantizer"]` is merged
# into the quantizer settings as is; `variant["peer"]` swaps in another library's layer (ablations.PEER_MODELS).
CODEBOOK_FREE = ("fsq", "lfq")
ROTATION = {"quantizer": {"rotation_trick": True}}
FRONTIER_ROWS = [
    ("VQ (baseline)", {}),
    ("Huh et al.: Affine + OPT + replace", {**AFFINE, **OPT, **REPLACE}),
    ("Huh et al. with full Affine (EMA) + OPT + replace", {**FULL_EMA, **OPT, **REPLACE}),
    ("rotation trick", ROTATION),
    ("rotation trick + Affine + OPT + replace", {**AFFINE, **OPT, **REPLACE, **ROTATION}),
    ("SimVQ", {"quantizer": {"codebook_parametrization": "simvq"}}),
    ("FSQ 8·8·8", {"quantizer": {"type": "fsq", "levels": [8, 8, 8]}}),
    ("LFQ 2^9", {"quantizer": {"type": "lfq"}}),
    ("residual VQ, 3 × 8 codes", {"quantizer": {"type": "residual", "num_levels": 3, "codebook_size": 8}}),
    ("residual VQ, 3 × 8 codes + Affine + OPT + replace",
     {**AFFINE, **OPT, **REPLACE, "quantizer": {"type": "residual", "num_levels": 3, "codebook_size": 8}}),
    # the cross-check pair (colour patches only): vector-quantize-pytorch's loss weighs both halves alike (β = 0.5)
    ("rotation trick, β = 0.5", {"quantizer": {"rotation_trick": True, "beta": 0.5}}),
    ("rotation trick, β = 0.5 (vector-quantize-pytorch 1.x)", {"peer": "vqp_rotation", "quantizer": {"beta": 0.5}}),
]
FRONTIER_CROSS_CHECK = {"rotation trick, β = 0.5", "rotation trick, β = 0.5 (vector-quantize-pytorch 1.x)"}

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
    """uint8 (…, C, H, W) → float in [-1, 1] (the `minus_one_one` normalisation of `hf_vq.data.ImageTransform`),
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
    q.update(variant.get("quantizer", {}))
    if q.get("type") in CODEBOOK_FREE:  # the codebook-free rows take their papers' settings; only K is shared
        own = quantizer_type(q["type"]).option_names()
        q = {"type": q["type"], **({"codebook_size": q["codebook_size"]} if "codebook_size" in own else {}),
             **variant["quantizer"]}
    train = dict(block["train"])
    train["optimization"] = variant.get("optimization", "joint")
    stochastic = block["stochastic_tau"] if variant.get("stochastic") else None
    return {
        "table": table, "row": row, "dataset": dataset, "task": task, "seed": seed, "init": init,
        "model": model, "quantizer": q, "train": train, "eval": dict(block["eval"]),
        "stochastic_tau": stochastic, "gap_every": gap_every, "data_path": settings.get("data_path"),
        "peer": variant.get("peer"),
        "pad_to": block.get("pad_to", {}).get(dataset) if isinstance(block.get("pad_to"), dict) else None,
    }


def spec_key(spec: dict) -> str:
    """Identity of a run's computation (table/row names excluded), so shared rows run once."""
    keys = ("dataset", "task", "seed", "init", "model", "quantizer", "train", "eval", "stochastic_tau", "gap_every", "pad_to")
    return repr([(k, spec[k]) for k in keys] + ([("peer", spec["peer"])] if spec.get("peer") else []))


COST_PER_STEP = {"vqvae": 0.08, "vq_vit": 0.14}  # ≈ seconds on one free core, measured on this machine's CPUs


def estimated_cost(spec: dict) -> float:
    """Relative cost (≈ seconds on one free core) for the ETA."""
    per_step = spec.get("cost_per_step", COST_PER_STEP[spec["task"]])
    steps = spec["train"]["max_steps"]
    gap = 2 * steps / spec["gap_every"] if spec["gap_every"] else 0
    return per_step * (steps + gap) + 3.0


# --------------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------------

class TensorImages(torch.utils.data.Dataset):
    """Examples {"pixel_values", "labels"?} of uint8 (N, C, H, W) images, as `to_pixels` maps them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, pad_to: int | None):
        self.images, self.labels, self.pad_to = images, labels, pad_to

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        example = {"pixel_values": to_pixels(self.images[i], self.pad_to)}
        if self.labels is not None:
            example["labels"] = self.labels[i]
        return example


class PermutationBatches(torch.utils.data.Sampler):
    """Full batches of a fresh seeded permutation per epoch (the last partial batch dropped), drawn from one
    generator in sequence: epochs are not resumable, which a reproduction run never needs."""

    def __init__(self, size: int, batch_size: int, seed: int):
        if size < batch_size:
            raise ValueError(f"train.batch_size {batch_size} is larger than the {size} training images")
        self.size, self.batch_size, self.generator = size, batch_size, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator)
        return iter(order[: len(self) * self.batch_size].view(len(self), self.batch_size))


def run_data(spec: dict, labels: bool) -> PreparedData:
    """The spec's dataset as `hf_vq.training.data.PreparedData`: [-1, 1] pixels, seeded permutation batches, the
    test split subsampled at fixed, evenly spread positions when `eval.max_test_samples` says so."""
    data = _data(spec["data_path"], spec["dataset"])
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    max_test = spec["eval"].get("max_test_samples") or {}
    if max_test.get(spec["dataset"]) is not None and max_test[spec["dataset"]] < len(test_x):
        pick = torch.linspace(0, len(test_x) - 1, max_test[spec["dataset"]]).round().long()
        test_x, test_y = test_x[pick], test_y[pick]
    channels = train_x.shape[1]
    return PreparedData(
        train=TensorImages(train_x, train_y if labels else None, spec["pad_to"]),
        test=TensorImages(test_x, test_y if labels else None, spec["pad_to"]),
        class_names=[str(c) for c in range(int(train_y.max()) + 1)], mean=[0.5] * channels, std=[0.5] * channels,
        batch_sampler=PermutationBatches(len(train_x), spec["train"]["batch_size"], spec["seed"]),
    )


def run_config(spec: dict, num_channels: int) -> RunConfig:
    """The spec as a `RunConfig` of the training loop (cosine schedule, Adam inner optimizer, no logging)."""
    t = spec["train"]
    return RunConfig(
        task=spec["task"], seed=spec["seed"],
        model={**spec["model"], "num_channels": num_channels, "quantizer": spec["quantizer"]},
        train=TrainConfig(batch_size=t["batch_size"], max_steps=t["max_steps"], lr=t["lr"],
                          weight_decay=t["weight_decay"], betas=list(t["betas"]), scheduler="cosine",
                          warmup_steps=t["warmup_steps"], optimization=t["optimization"], codebook_optimizer="adam"),
        eval=EvalConfig(eval_batch_size=spec["eval"]["eval_batch_size"]),
        logging=LoggingConfig(log_every=t["max_steps"], log_with="none", progress_bar=False),
    )


class RunCurves(Callback):
    """Per-step extras of a reproduction run: eq 12's τ annealed geometrically τ0 → τ1 (A.1), the gradient gap
    (A.3, eq 14: the reconstruction loss w.r.t. the VQ-VAE's encoder) every `gap_every` steps on a fixed batch,
    the loss curve, and a stop at the first non-finite loss (a diverged run)."""

    def __init__(self, spec: dict, train_images: torch.utils.data.Dataset):
        self.spec, self.steps = spec, spec["train"]["max_steps"]
        first = range(min(spec["train"]["batch_size"], len(train_images)))
        self.gap_pixels = torch.stack([train_images[i]["pixel_values"] for i in first])  # a fixed batch
        self.losses, self.gaps, self.diverged = [], [], False

    def on_step_begin(self, step: int, model) -> None:
        tau = self.spec["stochastic_tau"]
        if tau is not None:
            for vq in find_quantizers(model):
                vq.stochastic_temperature = float(tau[0] * (tau[1] / tau[0]) ** (step / max(1, self.steps - 1)))
        if self.spec["gap_every"] and step % self.spec["gap_every"] == 0:
            self.add_gap(step, model)

    def on_step_end(self, step: int, output) -> bool:
        loss = float(output.loss.detach())
        self.diverged = not math.isfinite(loss)
        if not self.diverged and ((step - 1) % max(1, self.steps // 20) == 0 or step == self.steps):
            self.losses.append({"step": step - 1, "loss": loss, "perplexity": float(output.perplexity.detach())})
        return self.diverged

    def add_gap(self, step: int, model) -> None:
        encoder = [p for n, p in model.named_parameters() if n.startswith(("encoder.", "quant_conv."))]
        loss = lambda m: m(pixel_values=self.gap_pixels).reconstruction_loss  # noqa: E731
        self.gaps.append({"step": step, "gap": gradient_gap(model, loss, encoder, seed=self.spec["seed"])})


def spec_task(spec: dict):
    """The training task of a spec, with another library's quantizer swapped in for a peer row."""
    task = TASKS[spec["task"]]
    return dataclasses.replace(task, model_class=peer_model(spec["peer"])) if spec.get("peer") else task


class StepTimer(Callback):
    """Wall time of each optimizer step after the first `warmup` (the batch already loaded: model, loss, backward,
    optimizer and quantizer updates only)."""

    def __init__(self, warmup: int):
        self.warmup, self.times, self.start = warmup, [], 0.0

    def on_step_begin(self, step: int, model) -> None:
        self.start = time.perf_counter()

    def on_step_end(self, step: int, output) -> bool:
        if step > self.warmup:
            self.times.append(time.perf_counter() - self.start)
        return False


def time_steps(specs: list[dict], steps: int = 30, warmup: int = 5, repeats: int = 3) -> dict[str, float]:
    """{row: seconds per training step} of each spec's model, measured in this process, one thread: `steps` timed
    steps after `warmup`, the median per run, the rows interleaved `repeats` times and the minimum kept (a busy
    machine only ever slows a step down). The training runs of the pool share the cores with each other, so their
    wall times cannot compare rows; these can."""
    torch.set_num_threads(1)
    best: dict[str, float] = {}
    for _ in range(repeats):
        for spec in specs:
            spec = {**spec, "train": {**spec["train"], "max_steps": warmup + steps},
                    "eval": {**spec["eval"], "max_test_samples": {spec["dataset"]: 8}}}
            task, timer = spec_task(spec), StepTimer(warmup)
            data = run_data(spec, labels=task.labels)
            train(run_config(spec, num_channels=len(data.mean)), task, data=data, callback=timer, save=False)
            best[spec["row"]] = min(best.get(spec["row"], math.inf), statistics.median(timer.times))
    return best


def run_one(spec: dict) -> dict:
    """Train and evaluate one spec through `hf_vq.training.train` (one process, CPU, single-threaded, nothing
    written); returns the spec's identity, the test metrics, timings and (for gap runs) the gradient-gap curve."""
    torch.set_num_threads(1)
    start = time.time()
    task = spec_task(spec)
    data = run_data(spec, labels=task.labels)
    curves = RunCurves(spec, data.train)
    run = train(run_config(spec, num_channels=len(data.mean)), task, data=data, callback=curves, save=False)
    if spec["gap_every"] and not curves.diverged:
        curves.add_gap(spec["train"]["max_steps"], run.model)
    metrics = {k: v for k, v in run.metrics.items() if k != "code_histogram"}
    if "mse" in metrics:  # [-1, 1] pixels: MSE in [0, 1] pixel units (the usual scale, e.g. the paper's CIFAR-10) is /4
        metrics["mse01"] = metrics["mse"] / 4.0
    return {
        "key": spec_key(spec), "table": spec["table"], "row": spec["row"], "dataset": spec["dataset"],
        "task": spec["task"], "seed": spec["seed"], "init": spec["init"], "metrics": metrics,
        "diverged": curves.diverged, "train_curve": curves.losses, "gap_curve": curves.gaps,
        "train_seconds": run.facts["train_seconds"], "seconds": time.time() - start, "num_test": len(data.test), "steps": spec["train"]["max_steps"],
    }


__all__ = [
    "DIAG_ROWS", "FRONTIER_CROSS_CHECK", "FRONTIER_ROWS", "GAP_ROWS", "NU_ROWS", "TABLE1_ROWS", "TABLE2_ROWS", "TABLE3_ROWS", "TABLE3_SECOND_DATASET",
    "PermutationBatches", "RunCurves", "StepTimer", "spec_task", "time_steps",
    "TensorImages", "estimated_cost", "make_spec", "prepare_data", "run_config", "run_data", "run_one", "spec_key",
    "to_pixels",
]
