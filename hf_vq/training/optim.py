"""Optimizers and schedules: AdamW without weight decay on the codebook (A.1), linear warmup then cosine
decay (§5.3), and the inner codebook optimizer of the alternated optimization (§4.2, §5.4, A.11).

`build_optimizers` returns the model optimizer (all parameters; the codebook, its affine, biases and norm
weights in a group without weight decay) and, for `optimization: alternated`, an `AlternatingOptimizer`
whose own optimizer holds the quantizers' `codebook_parameters()`. In alternated mode the codebook stays
in the model optimizer too: the outer step gives it the synchronized ν·g (eq 21) and nothing else (the
β half of the commitment loss is optimised by the inner steps). Both optimizers get the same warmup +
decay schedule, stepped once per real optimizer step; the inner optimizer's learning rate is
`train.codebook_lr` (default `train.lr`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from ..quantization import AlternatingOptimizer, find_quantizers, model_quantizers
from .config import ConfigError, TrainConfig


@dataclass
class Optimizers:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    alternating: AlternatingOptimizer | None = None
    codebook_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def schedulers(self) -> list:
        return [s for s in (self.scheduler, self.codebook_scheduler) if s is not None]

    def checkpoint_objects(self) -> dict:
        """Stateful objects that `accelerator.save_state` does not know, by name (see checkpoint.py)."""
        objects = {"scheduler": self.scheduler}
        if self.alternating is not None:
            objects |= {"alternating": self.alternating, "codebook_scheduler": self.codebook_scheduler}
        return objects

    def lrs(self) -> dict[str, float]:
        out = {"lr": self.scheduler.get_last_lr()[0]}
        if self.codebook_scheduler is not None:
            out["codebook_lr"] = self.codebook_scheduler.get_last_lr()[0]
        return out


NO_DECAY_NAMES = ("position_embeddings", "cls_token", "mask_token")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """[decayed: weights of rank >= 2; not decayed: the quantizers' `codebook_parameters()` (A.1), 1-d biases
    and norm scales, and a ViT's position embeddings and [CLS] token (as in MAE/timm)]. Empty groups are
    left out."""
    codebook = {id(p) for q in model_quantizers(model) for p in q.codebook_parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = id(p) in codebook or p.ndim < 2 or any(n in name for n in NO_DECAY_NAMES)
        (no_decay if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def schedule(optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int):
    if kind == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    if kind == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    if kind == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup_steps)
    raise ConfigError(f"train.scheduler must be cosine, linear or constant, got {kind!r}")


def count_steps(cfg: TrainConfig, batches_per_epoch: int) -> tuple[int, int, int]:
    """(total optimizer steps, warmup steps, optimizer steps per epoch) from the per-process batch count."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.gradient_accumulation_steps))
    total = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * steps_per_epoch)
    return total, min(warmup, total), steps_per_epoch


def build_optimizers(model: nn.Module, cfg: TrainConfig, total_steps: int, warmup_steps: int) -> Optimizers:
    """Model AdamW + schedule, and for `optimization: alternated` the `AlternatingOptimizer` (attached to
    the model's quantizers) with its own optimizer and schedule. Every optimizer is attached to the
    quantizers so LRU replacement resets the state rows of replaced codes."""
    if not model_quantizers(model):
        raise ConfigError("the model has no quantizer (hf_vq.quantization.Quantizer)")
    quantizers = find_quantizers(model)  # the VectorQuantizers, inside residual/grouped ones too
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps
    )
    for vq in quantizers:
        vq.attach_optimizer(optimizer)
    out = Optimizers(optimizer, schedule(optimizer, cfg.scheduler, warmup_steps, total_steps))
    if cfg.optimization == "alternated":
        params = [p for vq in quantizers for p in vq.codebook_parameters()]
        if not params:
            raise ConfigError("train.optimization: alternated needs a codebook trained by gradient; this quantizer "
                              "has none (quantizer.type fsq/lfq, or codebook_update 'ema': set model.quantizer."
                              "codebook_update: gradient, or train.optimization: joint)")
        lr = cfg.codebook_lr if cfg.codebook_lr is not None else cfg.lr
        if cfg.codebook_optimizer == "adam":
            inner = torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)
        else:
            inner = torch.optim.SGD(params, lr=lr, momentum=cfg.codebook_momentum)
        out.alternating = AlternatingOptimizer(quantizers, inner, inner_steps=cfg.inner_steps)  # attaches `inner`
        out.codebook_scheduler = schedule(inner, cfg.scheduler, warmup_steps, total_steps)
    return out


__all__ = ["Optimizers", "build_optimizers", "count_steps", "parameter_groups", "schedule"]
