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

The codebook belongs to the inner optimizer alone. Attaching freezes the quantizers' `codebook_parameters()`
(requires_grad=False, restored by `detach()`) outside the inner steps, so no outer optimizer can step them,
whatever parameter groups it was given (a parameter without a gradient is skipped, weight decay included),
and DDP/Accelerate wrapping the model afterwards leaves them out of its gradient all-reduce (they are kept
identical by the inner all-reduce below). Attach before `accelerator.prepare(model)` / DDP.

Choices where the paper is silent:
- ν keeps its meaning of joint training (eq 21), with any optimizer: the outer backward collects the
  synchronized term Σ ν·g_i per code into a (K, D) buffer, and the next inner step adds it to the commitment
  gradient — one optimizer step on the sum, as joint training takes. (A step on ν·g alone would be
  normalised away by Adam, making ν's size meaningless.) It joins the first of the k inner steps; the sync
  gradient of a run's very last step is never applied. With SGD and k = 1 the codebook therefore follows
  c ← c − η(∇L_cmt + ν·g_prev), the joint update's two terms.
- The encoder keeps the (1−β) commitment term in the outer step.
- Inner gradients are taken with `torch.autograd.grad` (never `.backward()`), so DDP's gradient hooks do
  not fire inside forward, and they are all-reduced explicitly: every rank takes the same inner step.
  The sync buffers are averaged over ranks, as DDP averages gradients.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

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


@contextlib.contextmanager
def _trainable(params: list[torch.Tensor]) -> Iterator[None]:
    """Let the inner step differentiate the (otherwise frozen) codebook parameters."""
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)


class AlternatingOptimizer:
    """Inner codebook optimizer of the alternated optimization.

    Args:
        quantizers: a model (its `VectorQuantizer`s are found) or an iterable of quantizers.
        optimizer: torch optimizer over the quantizers' `codebook_parameters()`; e.g.
            `torch.optim.Adam([p for q in qs for p in q.codebook_parameters()], lr=1e-3)`.
        inner_steps: k, codebook steps per training forward. 1 = the fused single pass.

    `sync_grads[i]`: the (K, D) fp32 ν·g sums of quantizer i waiting for its next inner step (saved in
    `state_dict()`, so a resumed run continues exactly). Use `detach()` to return to joint training.
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
            if vq.alternating is not None:
                raise ValueError("a quantizer is already attached to an AlternatingOptimizer; detach() it first")
            missing = [p for p in vq.codebook_parameters() if id(p) not in owned]
            if missing:
                raise ValueError("optimizer must hold every quantizer's codebook_parameters(); "
                                 f"{len(missing)} are missing")
        self.optimizer = optimizer
        self.inner_steps = inner_steps
        self.sync_grads = [torch.zeros_like(vq.codebook_signal, dtype=torch.float32) for vq in self.quantizers]
        for vq in self.quantizers:
            vq.alternating = self
            vq.attach_optimizer(optimizer)
            for p in vq.codebook_parameters():
                p.requires_grad_(False)

    def detach(self) -> None:
        """Return the quantizers to joint training (codebook parameters trainable by the model optimizer)."""
        for vq in self.quantizers:
            vq.alternating = None
            for p in vq.codebook_parameters():
                p.requires_grad_(True)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "sync_grads": [s.clone() for s in self.sync_grads]}

    def load_state_dict(self, state: dict) -> None:
        if "optimizer" not in state:  # 0.1.x saved the optimizer's state alone (no pending sync gradient)
            state = {"optimizer": state, "sync_grads": [torch.zeros_like(s) for s in self.sync_grads]}
        self.optimizer.load_state_dict(state["optimizer"])
        for buffer, saved in zip(self.sync_grads, state["sync_grads"], strict=True):
            buffer.copy_(saved)

    def sync_sink(self, vq: VectorQuantizer) -> torch.Tensor:
        """The buffer `vq`'s outer backward adds Σ ν·g into (on vq's device)."""
        i = self.quantizers.index(vq)
        if self.sync_grads[i].device != vq.codebook_signal.device:
            self.sync_grads[i] = self.sync_grads[i].to(vq.codebook_signal.device)
        return self.sync_grads[i]

    def run(self, vq: VectorQuantizer, z: torch.Tensor) -> torch.Tensor | None:
        """Take the inner steps for `vq` on detached (N, D) z (already l2-normalised in cosine mode).
        Returns the indices to reuse (k = 1, fused) or None (search again with the updated codebook).

        Every rank takes exactly k steps, even on an empty sub-batch, so the collectives stay matched."""
        params = vq.codebook_parameters()
        sync = self.sync_sink(vq)
        if vq.sync_nu > 0:  # ranks' ν·g averaged, as DDP averages gradients (no collective when ν = 0)
            all_reduce_sum(sync).div_(world_size())
        indices = None
        with _trainable(params):
            for step, part in enumerate(torch.tensor_split(z, self.inner_steps)):
                codebook = vq.effective_codebook(z.dtype)
                indices = vq.assign(part, codebook, stochastic=True)
                _, loss, _ = straight_through(part, codebook, indices, commitment_weight=vq.commitment_weight, beta=vq.beta)
                add_sync = step == 0 and vq.sync_nu > 0
                grads = self._mean_over_ranks(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=add_sync),
                                              params, part.shape[0])
                if add_sync:
                    # eq 21's ν·g joins the commitment gradient: ∂/∂θ Σ_k <sg(ν·g)_k, c_k(θ)>
                    sync_grads = torch.autograd.grad((codebook * sync.to(codebook.dtype)).sum(), params, allow_unused=True)
                    grads = [g if s is None else g + s for g, s in zip(grads, sync_grads)]
                sync.zero_()
                self._step(params, grads)
        return indices if self.inner_steps == 1 else None

    @staticmethod
    def _mean_over_ranks(grads: tuple[torch.Tensor | None, ...], params: list[torch.Tensor], count: int) -> list[torch.Tensor]:
        """Gradient of the mean loss over all ranks' vectors: each rank's mean-loss gradient is weighted by
        its vector count before the all-reduce."""
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        if world_size() == 1:
            return grads
        flat = torch.cat([g.reshape(-1) * count for g in grads] + [grads[0].new_tensor([float(count)])])
        all_reduce_sum(flat)
        flat = flat[:-1] / flat[-1].clamp_min(1)
        return [chunk.view_as(p) for chunk, p in zip(flat.split([p.numel() for p in params]), params)]

    def _step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        saved = [p.grad for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        for p, g in zip(params, saved):
            p.grad = g
