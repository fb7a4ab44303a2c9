"""Nearest-code search, chunked ("divide-and-conquer", paper A.1).

Peak extra memory is O(chunk_size × K), never O(N × K): the (N, K) distance matrix is never
materialised. On CUDA the distances may be computed in half precision (A.1); the caller gathers the
selected code vectors from the full-precision codebook.

Precision: ‖c‖² − 2z·c loses the gaps between codes when the norms are large (bf16 keeps 8 bits, fp32
24). Distances are translation invariant, so both sides are first centred on the codebook mean, which
removes any common offset; with a reduced-precision GEMM the `rerank` best candidates per vector are
then re-scored in fp32, so the result is the exact argmin unless the true nearest code is not among them.
"""

from __future__ import annotations

import torch

# Elements of one (chunk, K) distance block: 2**20 fp32 = 4 MiB, reused for every chunk of a call.
# Measured on CPU: blocks above glibc's 32 MiB mmap threshold were returned to the OS after each chunk and
# page-faulted in again (a third of the step); a 4 MiB block stays in cache for the argmin that reads it back.
DEFAULT_BLOCK_ELEMENTS = 2**20


def default_chunk_size(codebook_size: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per chunk so that one (chunk, K) distance block holds about `block_elements` values."""
    return max(1, block_elements // max(1, codebook_size))


DEFAULT_RERANK = 8


def _search_dtype(z: torch.Tensor, half_precision: bool) -> torch.dtype:
    if half_precision and z.device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return z.dtype


def squared_distances(z: torch.Tensor, codebook: torch.Tensor, codebook_sq: torch.Tensor | None = None) -> torch.Tensor:
    """‖z_i − c_j‖² − ‖z_i‖² = ‖c_j‖² − 2 z_i·c_j, shape (N, K).

    The ‖z_i‖² term is constant per row, so the argmin (eq 5) and the softmax of eq 12 do not need it.
    """
    if codebook_sq is None:
        codebook_sq = codebook.pow(2).sum(-1)
    return torch.addmm(codebook_sq.unsqueeze(0), z, codebook.t(), beta=1.0, alpha=-2.0)


@torch.no_grad()
def nearest_code(
    z: torch.Tensor,
    codebook: torch.Tensor,
    *,
    chunk_size: int | None = None,
    half_precision: bool = True,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
    search_dtype: torch.dtype | None = None,
    rerank: int = DEFAULT_RERANK,
) -> torch.Tensor:
    """Index of the nearest code for every row of `z` (eq 5), or a sample ∝ exp(−d/τ) (eq 12).

    Args:
        z: (N, D) floating-point vectors.
        codebook: (K, D) code vectors (the effective codebook, affine already applied).
        chunk_size: rows per chunk; default keeps one (chunk, K) block near 4 MiB.
        half_precision: on CUDA, compute distances in bf16/fp16 (A.1). Ignored on CPU.
        temperature: τ of the stochastic baseline (eq 12) with d = ½‖z − c‖². Sampling uses the
            Gumbel-max trick chunk by chunk, so it needs no (N, K) matrix either. None = argmin.
        generator: optional torch.Generator for the Gumbel noise.
        search_dtype: dtype of the distance GEMM; default float32/float64 as z, or bf16/fp16 on CUDA
            when half_precision.
        rerank: with a reduced-precision search_dtype, candidates re-scored exactly per vector.

    Returns:
        (N,) int64 indices.
    """
    n = z.shape[0]
    if chunk_size is None:
        chunk_size = default_chunk_size(codebook.shape[0])
    dtype = search_dtype or _search_dtype(z, half_precision)
    exact = codebook.detach().to(torch.promote_types(z.dtype, torch.float32))
    center = exact.mean(0)
    exact = exact - center
    exact_sq = exact.pow(2).sum(-1)
    reduced = dtype.itemsize < exact.dtype.itemsize
    if reduced:  # centre z too: a reduced-precision z would lose its offset-free digits
        cb, bias = exact.to(dtype), exact_sq.to(dtype)
    else:  # ‖z−c‖² − ‖z−m‖² = ‖c−m‖² + 2m·(c−m) − 2z·(c−m): the centring folds into the per-code bias
        cb, bias = exact, exact_sq + 2 * (exact @ center)
    out = torch.empty(n, dtype=torch.long, device=z.device)
    buffer = torch.empty(min(chunk_size, n), cb.shape[0], dtype=dtype, device=z.device)
    cb_t, bias_row = cb.t(), bias.unsqueeze(0)
    for start in range(0, n, chunk_size):
        chunk = z[start : start + chunk_size].detach()
        if reduced:
            chunk = chunk.to(exact.dtype) - center
        block = buffer[: chunk.shape[0]]
        torch.addmm(bias_row, chunk.to(dtype), cb_t, beta=1.0, alpha=-2.0, out=block)  # squared_distances, shifted
        if temperature is None and reduced and rerank > 1 and cb.shape[0] > 1:
            cand = block.topk(min(rerank, cb.shape[0]), dim=1, largest=False).indices  # (n, r)
            scores = exact_sq[cand] - 2 * torch.einsum("nd,nrd->nr", chunk, exact[cand])
            out[start : start + chunk_size] = cand.gather(1, scores.argmin(1, keepdim=True)).squeeze(1)
        elif temperature is None:
            out[start : start + chunk_size] = block.argmin(dim=1)
        else:
            # argmax(−d/τ + Gumbel) is a sample from softmax(−d/τ); the row-constant ‖z‖² cancels.
            logits = block.float().mul_(-0.5 / temperature)
            u = torch.rand(logits.shape, device=z.device, generator=generator).clamp_(min=1e-20)
            logits.sub_(u.log_().neg_().log_())
            out[start : start + chunk_size] = logits.argmax(dim=1)
    return out
