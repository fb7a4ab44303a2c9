"""One training step through Accelerate: forward, backward, optimizer and schedule steps, LRU step.

Gradient accumulation runs in `accelerator.accumulate(model)`: the model optimizer (an Accelerate-wrapped
one) only steps when `accelerator.sync_gradients`; the quantizers were built with `step_on_forward=False`
(`prepare_quantizers`), so `hf_vq.end_step(model)` closes one LRU step per real optimizer step, not per
micro-batch. Under alternation the inner codebook steps run inside every training forward (per
micro-batch, as in A.11: the k inner steps see the batch once). Mixed precision is the autocast that
`accelerator.prepare` puts around the model's forward; the quantizer computes in fp32 inside.
"""

from __future__ import annotations

import torch
from torch import nn

from ..quantization import end_step, find_quantizers
from .augment import augment_batch
from .optim import Optimizers


def prepare_quantizers(model: nn.Module) -> None:
    """LRU steps are counted by `end_step` once per optimizer step (gradient accumulation), not per forward."""
    for vq in find_quantizers(model):
        vq.step_on_forward = False


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seed torch's global generator from (seed, step, rank) at the start of each optimizer step.

    Everything random in a step (dropout, the replacement candidates that LRU draws) then depends on the
    step number only, not on how many random numbers earlier code consumed (DataLoader iterator creation,
    a resumed run's skipped batches), so a resumed run repeats the uninterrupted one exactly."""
    torch.manual_seed((seed * 1_000_003 + step) * 64 + rank)


def train_step(accelerator, model: nn.Module, batch: dict, optimizers: Optimizers, max_grad_norm: float | None = None,
               augment: str = "none"):
    """One micro-batch (augmented as `data.augment` says). Returns (model output, whether an optimizer step
    was taken)."""
    batch = augment_batch(batch, augment)
    with accelerator.accumulate(model):
        output = model(**batch)
        accelerator.backward(output.loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizers.optimizer.step()
        optimizers.optimizer.zero_grad(set_to_none=True)
    stepped = accelerator.sync_gradients
    if stepped:
        for scheduler in optimizers.schedulers():
            scheduler.step()
        end_step(model)  # DDP wrapper or not: finds the quantizers among the modules
    return output, stepped


# model output field -> log name, for every task (a task adds its own: Task.train_scalars)
SCALARS = {"loss": "loss", "commitment_loss": "commitment", "perplexity": "perplexity",
           "active_codes": "active_codes"}


def step_scalars(output, task_scalars: dict | None = None) -> dict:
    """The per-batch scalars of a model output worth logging, under their log names."""
    fields = {**SCALARS, **(task_scalars or {})}
    return {name: getattr(output, field) for field, name in fields.items() if getattr(output, field, None) is not None}


class StepStats:
    """Sums of per-micro-batch scalars between two log records, averaged over micro-batches and ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **values: torch.Tensor | float) -> None:
        for key, value in values.items():
            if value is None:
                continue
            value = value.detach().float() if torch.is_tensor(value) else value
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def pop(self, accelerator) -> dict[str, float]:
        """Means since the last pop, over all ranks (one all-reduce); every rank must call it."""
        keys = sorted(self.sums)
        packed = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64,
                              device=accelerator.device)
        packed = accelerator.reduce(packed, reduction="sum")
        count = max(1.0, float(packed[-1]))
        self.sums, self.count = {}, 0
        return {k: float(v) / count for k, v in zip(keys, packed[:-1].tolist())}


__all__ = ["SCALARS", "StepStats", "prepare_quantizers", "seed_step", "step_scalars", "train_step"]
