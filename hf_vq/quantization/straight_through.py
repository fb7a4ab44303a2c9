"""Straight-through estimator with the commitment loss and the synchronized update, as one autograd op.

Forward value: z_q = c[k] exactly (not z + (z_q − z), which rounds). The commitment is the paper's
mean-squared error over all N·D elements (A.1: "α = 5 ... with mean-squared error for the commitment
loss"), as vqtorch, diffusers and vector-quantize-pytorch compute it:

    L_cmt = (1/(N·D)) Σ_i ‖z_e,i − z_q,i‖²                                    eqs 8–9, d = MSE
    loss  = α·L_cmt                                                           eq 10's α·L_cmt

Gradients, for the upstream gradient g = ∂L/∂z_q and the weight w of the returned `loss` (∂L/∂loss):

    ∂L/∂z_e = g + w·α(1−β)·2(z_e − z_q)/(N·D)                 straight-through (eq 7) + encoder half (eq 8)
    ∂L/∂c_k = Σ_{i: k_i = k} ν·g_i + w·αβ·2(z_q,i − z_e,i)/(N·D)   sync (eq 21) + codebook half (eq 9)

Writing the backward by hand saves the (N, D) intermediates of the autograd version: only z_e, the
(K, D) codebook and the indices are kept for the backward pass.

Under alternated optimization the codebook is not an input of the outer graph (it belongs to the inner
optimizer); the sync term Σ ν·g_i is then added into `sync_sink`, a (K, D) buffer the inner optimizer
consumes at its next step (see alternating.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def squared_error_mean(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The commitment distance of A.1: mean over all elements of (z_e − z_q)² (0 for an empty input)."""
    return (z - z_q).pow(2).sum() / max(1, z.numel())


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, codebook, indices, sync_nu: float, alpha: float, encoder_share: float, codebook_share: float,
                sync_sink: torch.Tensor | None):
        z_q = codebook.index_select(0, indices)
        commitment = squared_error_mean(z, z_q)
        ctx.save_for_backward(z, codebook, indices)
        ctx.weights = (sync_nu, alpha * encoder_share, alpha * codebook_share)
        ctx.sync_sink = sync_sink
        ctx.mark_non_differentiable(commitment)
        return z_q, commitment * alpha, commitment

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_zq, grad_loss, _grad_commitment):
        z, codebook, indices = ctx.saved_tensors
        sync_nu, encoder_weight, codebook_weight = ctx.weights
        need_z, need_codebook = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        residual = None
        if grad_loss is not None and (encoder_weight or codebook_weight):
            residual = (z - codebook.index_select(0, indices)).mul_(2 * grad_loss / max(1, z.numel()))  # w·2(z_e − z_q)/(N·D)
        grad_z = grad_codebook = None
        if need_z:
            grad_z = grad_zq.clone() if grad_zq is not None else torch.zeros_like(z)
            if residual is not None and encoder_weight:
                grad_z.add_(residual, alpha=encoder_weight)
        if ctx.sync_sink is not None and grad_zq is not None and sync_nu:
            ctx.sync_sink.index_add_(0, indices, (grad_zq * sync_nu).to(ctx.sync_sink.dtype))  # eq 21, deferred
        if need_codebook:
            grad_rows = None
            if grad_zq is not None and sync_nu:
                grad_rows = grad_zq * sync_nu
            if residual is not None and codebook_weight:
                grad_rows = residual.mul_(-codebook_weight) if grad_rows is None else grad_rows.sub_(residual, alpha=codebook_weight)
            grad_codebook = torch.zeros_like(codebook)
            if grad_rows is not None:
                grad_codebook.index_add_(0, indices, grad_rows.to(codebook.dtype))
        return grad_z, grad_codebook, None, None, None, None, None, None


def straight_through(
    z: torch.Tensor,
    codebook: torch.Tensor,
    indices: torch.Tensor,
    *,
    sync_nu: float = 0.0,
    commitment_weight: float = 1.0,
    beta: float = 0.95,
    codebook_term: bool = True,
    sync_sink: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize with the straight-through estimator.

    Args:
        z: (N, D) encoder output z_e.
        codebook: (K, D) effective code vectors (same dtype as z).
        indices: (N,) int64 selected codes.
        sync_nu: ν of the synchronized update (eq 21); 0 = plain straight-through.
        commitment_weight: α of eq 10 (on the element-wise MSE).
        beta: β of eqs 8–9.
        codebook_term: False drops the β half's gradient (the EMA rule or an inner optimizer updates
            the codebook instead); the loss value is unchanged.
        sync_sink: (K, D) tensor; if given, the backward adds Σ_{i→k} ν·g_i into it (alternated training).

    Returns:
        z_q (N, D) with straight-through gradients; loss = α·L_cmt (scalar, differentiable);
        commitment = L_cmt (scalar, no gradient).
    """
    codebook_share = beta if codebook_term else 0.0
    return _StraightThrough.apply(z, codebook, indices, float(sync_nu), float(commitment_weight), 1.0 - beta,
                                  codebook_share, sync_sink)
