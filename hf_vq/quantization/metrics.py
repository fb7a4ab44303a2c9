"""Codebook and straight-through diagnostics: perplexity, active codes, quantization error, the divergence
D(P, C) of eq 13, the gradient gap of eq 14 / A.3, and the diagnostics that explain a collapse: the
effective rank of z_e, the share of codes within reach of it, and the affine's statistics. None of them
downloads anything."""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from .affine import affine_statistics
from .alternating import find_quantizers
from .layer import VectorQuantizer, histogram_perplexity
from .search import nearest_code


def code_histogram(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(K,) int64 counts of each code in `indices` (any shape)."""
    return torch.bincount(indices.reshape(-1).long(), minlength=codebook_size)


def perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """2^H(p) of the code histogram (§5.1): 1 = collapse onto one code, K = uniform use."""
    return float(histogram_perplexity(code_histogram(indices, codebook_size))[0])


def active_codes(indices: torch.Tensor, codebook_size: int) -> float:
    """Fraction of the K codes selected at least once in `indices` (Table 1's "Active")."""
    return float((code_histogram(indices, codebook_size) > 0).float().mean())


def active_code_ratio(indices: torch.Tensor, codebook_size: int) -> float:
    """Deprecated alias of `active_codes` (removed in 0.3)."""
    warnings.warn("hf_vq.metrics.active_code_ratio is deprecated; use active_codes", FutureWarning, stacklevel=2)
    return active_codes(indices, codebook_size)


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> float:
    """Participation ratio (Σλ)²/Σλ² of the covariance eigenvalues λ of the (N, D) vectors `z`: D for an
    isotropic cloud, 1 for a line. In small conv autoencoders z_e drops to ~1.4 of 32 within ~100 steps,
    where a diagonal affine can no longer spread the codes over it."""
    z = z.reshape(-1, z.shape[-1]).double()
    if z.shape[0] < 2:
        return float("nan")
    eig = torch.linalg.eigvalsh(torch.cov(z.T, correction=0)).clamp_min(0)
    return float(eig.sum() ** 2 / (eig.pow(2).sum()).clamp_min(1e-300))


@torch.no_grad()
def codes_in_reach(z: torch.Tensor, codebook: torch.Tensor) -> float:
    """Fraction of the K codes nearer to some vector of `z` (N, D) than the median quantization distance
    of `z`: codes that a small move of the embedding could select. Chunked: O(chunk × max(N, K)) memory."""
    z = z.reshape(-1, codebook.shape[-1]).float()
    codebook = codebook.float()
    if z.shape[0] == 0:
        return float("nan")
    to_code = (z - codebook[nearest_code(z, codebook, half_precision=False)]).pow(2).sum(-1)
    to_vector = (codebook - z[nearest_code(codebook, z, half_precision=False)]).pow(2).sum(-1)
    return float((to_vector <= to_code.median()).float().mean())


def collapse_diagnostics(vq: VectorQuantizer, z: torch.Tensor) -> dict[str, float]:
    """{"ze_effective_rank", "codes_in_reach", affine statistics} of a quantizer on its inputs z (N, D)
    (channel-last; l2-normalised first in cosine mode, as the layer compares them). A quantizer without codes
    to reach (FSQ, LFQ: any `Quantizer` that is not a `VectorQuantizer`) gets the effective rank only."""
    z = z.reshape(-1, vq.dim).float()
    if not isinstance(vq, VectorQuantizer):
        return {"ze_effective_rank": effective_rank(z)}
    if vq.distance == "cosine":
        z = torch.nn.functional.normalize(z, dim=-1)
    return {"ze_effective_rank": effective_rank(z), "codes_in_reach": codes_in_reach(z, vq.codebook),
            **affine_statistics(vq.affine)}


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


class _Recorded:
    """Inputs recorded by `recorded_inputs`, as (N, D) fp32 rows on the CPU."""

    def __init__(self, vq: VectorQuantizer, max_vectors: int):
        self.vq, self.max_vectors, self.rows, self.count = vq, max_vectors, [], 0

    def __call__(self, module, args) -> None:
        if self.count >= self.max_vectors:
            return
        z = args[0].detach()
        z = (z.movedim(1, -1) if self.vq.channel_first else z).reshape(-1, self.vq.dim)[: self.max_vectors - self.count]
        self.rows.append(z.float().cpu())
        self.count += z.shape[0]

    def vectors(self) -> torch.Tensor:
        return torch.cat(self.rows) if self.rows else torch.zeros(0, self.vq.dim)


@contextlib.contextmanager
def recorded_inputs(vq: VectorQuantizer, max_vectors: int = 16384) -> Iterator[_Recorded]:
    """Record the first `max_vectors` input vectors z_e of `vq`'s forward calls made inside the block
    (e.g. an evaluation loop), for `collapse_diagnostics(vq, recorded.vectors())`."""
    recorder = _Recorded(vq, max_vectors)
    handle = vq.register_forward_pre_hook(recorder)
    try:
        yield recorder
    finally:
        handle.remove()
