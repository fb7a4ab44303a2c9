"""The tasks hf_vq trains, one entry each: everything the loop, the evaluation and the export tell apart.

Adding a task (say a VQ-ResNet classifier) is one `Task` here plus its model; nothing else branches on
the task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..models import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification
from .plots import reconstruction_plot


@dataclass(frozen=True)
class Task:
    name: str  # `task` in a run's config
    model_class: type
    config_class: type
    script: str  # the entry point that trains it
    labels: bool  # the data must carry class labels (a classifier)
    metric: str  # the task metric: progress bar, training-curve panel
    # (batch, model output, to_unit) -> {name: (B,) per-example values}; to_unit maps pixels back to [0, 1]
    batch_metrics: Callable[..., dict[str, torch.Tensor]]
    # {name: mean of batch_metrics over the split} -> the reported metrics
    summarize: Callable[[dict[str, float]], dict[str, float]] = dict
    # model output field -> log name, besides those of every task (step.SCALARS)
    train_scalars: Mapping[str, str] = field(default_factory=dict)
    plots: tuple[Callable, ...] = ()  # extra plots: (model, data, cfg, plot_dir) -> Path
    card_template: str = "vq_vae"  # hf_vq.hub's template name


def _per_image(difference: torch.Tensor) -> torch.Tensor:
    return difference.pow(2).flatten(1).mean(1)


def reconstruction_metrics(batch: dict, output, to_unit) -> dict[str, torch.Tensor]:
    """Per image: `mse` in the normalised pixel space the model is trained in (its reconstruction loss), and
    `mse_01` on images mapped back to [0, 1], the reconstruction clipped (for PSNR)."""
    x, recon = batch["pixel_values"].float(), output.reconstruction.float()
    return {"mse": _per_image(recon - x), "mse_01": _per_image(to_unit(recon).clamp(0, 1) - to_unit(x))}


def reconstruction_summary(means: dict[str, float]) -> dict[str, float]:
    """`mse`, and `psnr` in dB from the split's mean squared error in [0, 1]: 10·log10(1 / MSE₀₁)."""
    mse01 = means["mse_01"]
    return {"mse": means["mse"], "psnr": 10.0 * math.log10(1.0 / mse01) if mse01 > 0 else float("inf")}


def classification_metrics(batch: dict, output, to_unit) -> dict[str, torch.Tensor]:
    """Per image: `accuracy`, 1.0 where the top-1 class is the label."""
    return {"accuracy": (output.logits.argmax(-1) == batch["labels"]).float()}


VQVAE = Task(
    name="vqvae", model_class=VQVAEModel, config_class=VQVAEConfig, script="training/train_vqvae.py",
    labels=False, metric="mse", batch_metrics=reconstruction_metrics, summarize=reconstruction_summary,
    train_scalars={"reconstruction_loss": "mse"}, plots=(reconstruction_plot,), card_template="vq_vae",
)
VQ_VIT = Task(
    name="vq_vit", model_class=VQViTForImageClassification, config_class=VQViTConfig,
    script="training/train_vq_vit.py", labels=True, metric="accuracy", batch_metrics=classification_metrics,
    card_template="vq_vit",
)
TASKS = {task.name: task for task in (VQVAE, VQ_VIT)}

__all__ = ["TASKS", "Task", "VQVAE", "VQ_VIT", "classification_metrics", "reconstruction_metrics",
           "reconstruction_summary"]
