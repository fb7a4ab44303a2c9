"""Alternated optimization (§4.2, eqs 17–18; §5.4; A.11).

    inner (k times):  min_h  L_commit(h(F(x)), sg F(x))      codebook only, encoder output detached (eq 17)
    outer (once):     min_{F,G} L_task(G(h(F(x))))          with the codebook just updated        (eq 18)

`AlternatingOptimizer` runs the inner steps *inside* each training forward of the quantizers it is
attached to: the layer receives z_e = F(x), takes k codebook steps on k equal sub-batches of the vectors
(each searched against the codebook as it is at that step, so all k sub-batches together see the batch
once, as in A.11), and then quantizes the whole batch with the updated codebook for the outer step. For
k = 1 the indices of the inner search are reused: the single fused pass of §5.4. The caller's own
optimizer then takes the outer step on the task loss as usual. Nothing else in the training loop changes,
so gradient accumulation (inner steps run per micro-batch) and autocast (the layer computes in fp32) work.

Choices where the paper is silent:
- During the outer step the codebook receives only the synchronized ν·g (eq 21); its commitment half
  (β term) was already optimised by the inner steps. The encoder keeps the (1−β) commitment term.
- Inner gradients are taken with `torch.autograd.grad` (never `.backward()`), so DDP's gradient hooks do
  not fire inside forward, and they are all-reduced explicitly: every rank takes the same inner step.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .distributed import all_reduce_sum, world_size
from .layer import VectorQuantizer
from .straight_through import straight_through


def find_quantizers(module: nn.Module) -> list[VectorQuantizer]:
    """All `VectorQuantizer` submodules of `module` (itself included)."""
    return [m for m in module.modules() if isinstance(m, VectorQuantizer)]


def end_step(module: nn.Module) -> None:
    """Close one LRU step on every quantizer of `module`; call once per optimizer step when the
    quantizers were built with `step_on_forward=False` (gradient accumulation)."""
    for vq in find_quantizers(module):
        vq.end_step()


class AlternatingOptimizer:
    """Inner codebook optimizer of the alternated optimization.

    Args:
        quantizers: a model (its `VectorQuantizer`s are found) or an iterable of quantizers.
        optimizer: torch optimizer over the quantizers' `codebook_parameters()`; e.g.
            `torch.optim.Adam([p for q in qs for p in q.codebook_parameters()], lr=1e-3)`.
        inner_steps: k, codebook steps per training forward. 1 = the fused single pass.

    Use `detach()` to return the quantizers to joint training.
    """

    def __init__(self, quantizers: nn.Module | Iterable[VectorQuantizer], optimizer: torch.optim.Optimizer, inner_steps: int = 1):
        if not isinstance(inner_steps, int) or isinstance(inner_steps, bool) or inner_steps < 1:
            raise ValueError(f"inner_steps must be an int >= 1, got {inner_steps!r}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.quantizers = find_quantizers(quantizers) if isinstance(quantizers, nn.Module) else list(quantizers)
        if not self.quantizers:
            raise ValueError("quantizers holds no VectorQuantizer: pass the model that contains them")
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for vq in self.quantizers:
            if vq.codebook_update != "gradient":
                raise ValueError("AlternatingOptimizer needs codebook_update='gradient'; the 'ema' rule has no optimizer")
            missing = [p for p in vq.codebook_parameters() if id(p) not in owned]
            if missing:
                raise ValueError("optimizer must hold every quantizer's codebook_parameters(); "
                                 f"{len(missing)} are missing")
        self.optimizer = optimizer
        self.inner_steps = inner_steps
        for vq in self.quantizers:
            vq._inner = self
            vq.attach_optimizer(optimizer)

    def detach(self) -> None:
        for vq in self.quantizers:
            vq._inner = None

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def run(self, vq: VectorQuantizer, z: torch.Tensor) -> torch.Tensor | None:
        """Take the inner steps for `vq` on detached (N, D) z (already l2-normalised in cosine mode).
        Returns the indices to reuse (k = 1, fused) or None (search again with the updated codebook).

        Every rank takes exactly k steps, even on an empty sub-batch, so the collectives stay matched."""
        params = vq.codebook_parameters()
        indices = None
        for part in torch.tensor_split(z, self.inner_steps):
            codebook = vq._output_codebook(z.dtype)
            indices = vq._search(part, codebook, stochastic=True)
            _, loss, _ = straight_through(part, codebook, indices, commitment_weight=vq.commitment_weight, beta=vq.beta)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            self._step(params, grads, part.shape[0])
        return indices if self.inner_steps == 1 else None

    def _step(self, params: list[torch.Tensor], grads: tuple[torch.Tensor | None, ...], count: int) -> None:
        """Optimizer step on the gradient of the mean loss over all ranks' vectors: each rank's mean-loss
        gradient is weighted by its vector count before the all-reduce."""
        saved = [p.grad for p in params]
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        if world_size() > 1:
            flat = torch.cat([g.reshape(-1) * count for g in grads] + [grads[0].new_tensor([float(count)])])
            all_reduce_sum(flat)
            flat = flat[:-1] / flat[-1].clamp_min(1)
            grads = [chunk.view_as(p) for chunk, p in zip(flat.split([p.numel() for p in params]), params)]
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        for p, g in zip(params, saved):
            p.grad = g
