"""The tasks hf_vq trains, one entry each: everything the loop, the evaluation and the export tell apart.

Adding a task (say a VQ-ResNet classifier) is one `Task` here plus its model; nothing else branches on
the task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..evaluation.image_metrics import SSIM_WINDOW, mean_squared_error
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
    # (batch, model output, to_unit) -> {hf_vq.evaluation module: its add_batch inputs}; to_unit maps pixels back
    # to [0, 1]. The split's task metrics are those modules' results.
    evaluation_inputs: Callable[..., dict[str, dict[str, torch.Tensor]]]
    # (batch, model output) -> {name: (B,) per-example values}, averaged over the split (besides the modules)
    batch_metrics: Callable[..., dict[str, torch.Tensor]] = lambda batch, output: {}
    # model output field -> log name, besides those of every task (step.SCALARS)
    train_scalars: Mapping[str, str] = field(default_factory=dict)
    plots: tuple[Callable, ...] = ()  # extra plots: (model, data, cfg, plot_dir) -> Path
    card_template: str = "vq_vae"  # hf_vq.hub's template name


def reconstruction_metrics(batch: dict, output) -> dict[str, torch.Tensor]:
    """Per image: `mse` in the normalised pixel space the model is trained in (its reconstruction loss)."""
    return {"mse": mean_squared_error(output.reconstruction.float(), batch["pixel_values"].float())}


def reconstruction_inputs(batch: dict, output, to_unit) -> dict[str, dict[str, torch.Tensor]]:
    """`psnr` and `ssim` of the reconstruction clipped to [0, 1] against the input, both mapped back to [0, 1];
    no `ssim` for images smaller than its 11×11 window (it is undefined there)."""
    images = {"predictions": to_unit(output.reconstruction.float()).clamp(0, 1),
              "references": to_unit(batch["pixel_values"].float())}
    small = min(images["references"].shape[-2:]) < SSIM_WINDOW
    return {"psnr": images} if small else {"psnr": images, "ssim": images}


def classification_inputs(batch: dict, output, to_unit) -> dict[str, dict[str, torch.Tensor]]:
    """`accuracy` of the top-1 class."""
    return {"accuracy": {"predictions": output.logits.argmax(-1), "references": batch["labels"]}}


VQVAE = Task(
    name="vqvae", model_class=VQVAEModel, config_class=VQVAEConfig, script="training/train_vqvae.py",
    labels=False, metric="mse", evaluation_inputs=reconstruction_inputs, batch_metrics=reconstruction_metrics,
    train_scalars={"reconstruction_loss": "mse"}, plots=(reconstruction_plot,), card_template="vq_vae",
)
VQ_VIT = Task(
    name="vq_vit", model_class=VQViTForImageClassification, config_class=VQViTConfig,
    script="training/train_vq_vit.py", labels=True, metric="accuracy", evaluation_inputs=classification_inputs,
    card_template="vq_vit",
)
TASKS = {task.name: task for task in (VQVAE, VQ_VIT)}

__all__ = ["TASKS", "Task", "VQVAE", "VQ_VIT", "classification_inputs", "reconstruction_inputs",
           "reconstruction_metrics"]
