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
(K, D) codebook and the indices are kept for the backward pass, and both passes are one sweep over the
rows (kernels/fused_quantize.py: the native CPU kernel, or torch in row chunks).

With the rotation trick (rotation.py, Fifty et al. 2025) the encoder's g is replaced by λRᵀg, the
gradient through sg[λR]·z_e; everything else, the codebook's ν·g included, is unchanged (choice: eq 21
moves the code along the task gradient at z_q = c_k, which the rotation of z_e's gradient does not change).

Under alternated optimization the codebook is not an input of the outer graph (it belongs to the inner
optimizer); the sync term Σ ν·g_i is then added into `sync_sink`, a (K, D) buffer the inner optimizer
consumes at its next step (see alternating.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .kernels.fused_quantize import quantize_backward, quantize_forward
from .rotation import rotation_trick_gradient


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, codebook, indices, sync_nu: float, alpha: float, encoder_share: float, codebook_share: float,
                sync_sink: torch.Tensor | None, rotation_trick: bool):
        _, z_q, sse = quantize_forward(z, codebook, indices)  # one pass: gather and Σ‖z_e − z_q‖²
        commitment = (sse / max(1, z.numel())).to(z.dtype)
        ctx.save_for_backward(z, codebook, indices)
        ctx.weights = (sync_nu, alpha * encoder_share, alpha * codebook_share)
        ctx.sync_sink = sync_sink
        ctx.rotation_trick = rotation_trick
        ctx.mark_non_differentiable(commitment)
        return z_q, commitment * alpha, commitment

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_zq, grad_loss, _grad_commitment):
        z, codebook, indices = ctx.saved_tensors
        sync_nu, encoder_weight, codebook_weight = ctx.weights
        need_z, need_codebook = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        a = b = 0.0
        if grad_loss is not None:
            scale = grad_loss * (2.0 / max(1, z.numel()))  # w·2/(N·D); a tensor: no host sync on CUDA
            a = scale * encoder_weight if encoder_weight else 0.0
            b = scale * codebook_weight if codebook_weight else 0.0
        # Under alternation the codebook is not in this graph: eq 21's Σ ν·g goes to the sink instead (its
        # β half, b, is 0 there: the inner steps take it).
        sink = ctx.sync_sink if ctx.sync_sink is not None and grad_zq is not None and sync_nu else None
        need_codebook_grad = need_codebook or sink is not None
        if ctx.rotation_trick and grad_zq is not None and need_z:
            # two passes: the encoder's half with λRᵀg, the codebook's with g itself
            rotated = rotation_trick_gradient(z, codebook.index_select(0, indices), grad_zq)
            grad_z, _ = quantize_backward(z, codebook, indices, rotated, a, 0.0, 0.0, need_codebook=False)
            _, grad_codebook = (None, None) if not need_codebook_grad else quantize_backward(
                z, codebook, indices, grad_zq, 0.0, b, sync_nu, need_z=False)
        else:
            grad_z, grad_codebook = quantize_backward(z, codebook, indices, grad_zq, a, b, sync_nu, need_z=need_z,
                                                      need_codebook=need_codebook_grad)
        if sink is not None:
            sink.add_(grad_codebook.to(sink.dtype))
            grad_codebook = grad_codebook if need_codebook else None
        return grad_z, grad_codebook, None, None, None, None, None, None, None


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
    rotation_trick: bool = False,
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
        rotation_trick: z_e's gradient is λRᵀg (Fifty et al. 2025; rotation.py) instead of g.

    Returns:
        z_q (N, D) with straight-through (or rotation-trick) gradients; loss = α·L_cmt (scalar, differentiable);
        commitment = L_cmt (scalar, no gradient).
    """
    codebook_share = beta if codebook_term else 0.0
    return _StraightThrough.apply(z, codebook, indices, float(sync_nu), float(commitment_weight), 1.0 - beta,
                                  codebook_share, sync_sink, bool(rotation_trick))
