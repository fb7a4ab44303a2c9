"""Codebook and straight-through diagnostics: perplexity, active codes, quantization error, the divergence
D(P, C) of eq 13 and the gradient gap of eq 14 / A.3. None of them downloads anything."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from torch import nn

from .alternating import find_quantizers
from .layer import histogram_perplexity
from .search import nearest_code


def code_histogram(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(K,) int64 counts of each code in `indices` (any shape)."""
    return torch.bincount(indices.reshape(-1).long(), minlength=codebook_size)


def perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """2^H(p) of the code histogram (§5.1): 1 = collapse onto one code, K = uniform use."""
    return float(histogram_perplexity(code_histogram(indices, codebook_size))[0])


def active_code_ratio(indices: torch.Tensor, codebook_size: int) -> float:
    """Fraction of the K codes selected at least once in `indices` (Table 1's "Active")."""
    return float((code_histogram(indices, codebook_size) > 0).float().mean())


def quantization_error(z_e: torch.Tensor, z_q: torch.Tensor, dim: int = -1) -> float:
    """Mean over vectors of ½‖z_e − z_q‖², the commitment distance d of §2 (features on axis `dim`)."""
    return float(0.5 * (z_e.float() - z_q.float()).pow(2).sum(dim).mean())


@torch.no_grad()
def divergence(z: torch.Tensor, codebook: torch.Tensor, chunk_size: int | None = None) -> float:
    """D(P, C) = (1/|P|) Σ_i min_j ½‖z_i − c_j‖² (eq 13), chunked; z: (N, D), codebook: (K, D)."""
    z = z.reshape(-1, codebook.shape[-1]).float()
    codebook = codebook.float()
    idx = nearest_code(z, codebook, chunk_size=chunk_size, half_precision=False)
    return quantization_error(z, codebook[idx])


def gradient_gap(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    parameters: Iterable[torch.Tensor] | None = None,
    seed: int = 0,
) -> float:
    """Δ_gap of eq 14 as in A.3: Σ_l ‖g_l − ĝ_l‖², g from a pass with every quantizer bypassed (no VQ),
    ĝ from the straight-through pass, over `parameters` (default: all trainable ones; pass the encoder's
    for eq 14's ∂/∂F(x)).

    `loss_fn(model)` must return the task loss only (no commitment term). Both passes run with the same
    RNG seed and with the quantizers in eval mode, so no codebook state (LRU, EMA, k-means) changes.
    """
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    quantizers = find_quantizers(model)
    modes = [q.training for q in quantizers]
    grads = []
    try:
        for q in quantizers:
            q.eval()
        for bypass in (True, False):
            with contextlib.ExitStack() as stack, torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                if bypass:
                    for q in quantizers:
                        stack.enter_context(q.bypass())
                loss = loss_fn(model)
                grads.append(torch.autograd.grad(loss, params, allow_unused=True))
    finally:
        for q, mode in zip(quantizers, modes):
            q.train(mode)
    gap = 0.0
    for g, g_hat in zip(*grads):
        if g is not None or g_hat is not None:
            g = torch.zeros_like(g_hat) if g is None else g
            g_hat = torch.zeros_like(g) if g_hat is None else g_hat
            gap += float((g.float() - g_hat.float()).pow(2).sum())
    return gap
