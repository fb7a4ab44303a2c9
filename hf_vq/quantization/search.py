"""Nearest-code search (eq 5), chunked ("divide-and-conquer", paper A.1), with fused kernels where they run.

Three paths compute the same argmin of ‖z_i − c_j‖²:
- CPU, float32/float64: the native kernel (kernels/vq_cpu.cpp), GEMM tiles with the argmax in registers;
- CUDA with Triton: the same fused design (kernels/triton_search.py);
- anything else, or `HF_VQ_DISABLE_NATIVE=1`: torch, in (chunk, K) blocks reused for the whole call.
None materialises the (N, K) distance matrix. All use the argmax form k = argmax_j z·s_j − h_j, which
folds the ‖c‖² term into a per-code bias.

Precision: ‖c‖² − 2z·c loses the gaps between codes when the norms are large (bf16 keeps 8 bits, fp32
24). Distances are translation invariant, so both sides are first centred on the codebook mean m, which
removes any common offset; with a reduced-precision GEMM (CUDA, A.1) the `rerank` best candidates per
vector are then re-scored in fp32, so the result is the exact argmin unless the true nearest code is not
among them.
"""

from __future__ import annotations

import torch

from .kernels.cpu_extension import native_forward, native_supports
from .kernels.triton_search import triton_candidates, triton_supports

# Elements of one (chunk, K) score block of the torch path: 2**20 fp32 = 4 MiB, reused for every chunk of
# a call. Measured on CPU (N = 65,536, D = 64, K = 1,024 and 4,096, blocks of 2**16, 2**18, 2**20): blocks
# above glibc's 32 MiB mmap threshold were returned to the OS after each chunk and page-faulted in again
# (a third of the step); below it, the GEMM alone is fastest into 2**18 blocks, but GEMM + argmax is
# fastest at 2**20, where the per-chunk dispatch of the argmax weighs least.
DEFAULT_BLOCK_ELEMENTS = 2**20

DEFAULT_RERANK = 8


def default_chunk_size(codebook_size: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per chunk so that one (chunk, K) score block holds about `block_elements` values."""
    return max(1, block_elements // max(1, codebook_size))


def _search_dtype(z: torch.Tensor, half_precision: bool) -> torch.dtype:
    if half_precision and z.device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return z.dtype


def squared_distances(z: torch.Tensor, codebook: torch.Tensor,
                      codebook_sq: torch.Tensor | None = None) -> torch.Tensor:
    """‖z_i − c_j‖² − ‖z_i‖² = ‖c_j‖² − 2 z_i·c_j, shape (N, K).

    The ‖z_i‖² term is constant per row, so the argmin (eq 5) and the softmax of eq 12 do not need it.
    """
    if codebook_sq is None:
        codebook_sq = codebook.pow(2).sum(-1)
    return torch.addmm(codebook_sq.unsqueeze(0), z, codebook.t(), beta=1.0, alpha=-2.0)


def argmax_form(codebook: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(m, s, h) with m the codebook mean, s_j = c_j − m and h_j = ½‖s_j‖² + m·s_j, in `dtype`.

    argmin_j ‖z − c_j‖² = argmax_j z·s_j − h_j, since ‖z − c_j‖² = ‖z − m‖² − 2(z·s_j − h_j). For z
    centred as well, (z − m)·s_j − ½‖s_j‖² has the same argmax.
    """
    exact = codebook.detach().to(dtype)
    center = exact.mean(0)
    centred = exact - center
    return center, centred, 0.5 * centred.pow(2).sum(-1) + centred @ center


def _rerank(z: torch.Tensor, center: torch.Tensor, centred: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The exact argmax of (z − m)·s_j − ½‖s_j‖² among each row's candidates (ties: the lower index)."""
    candidates = candidates.sort(dim=1).values
    zc = z.to(centred.dtype) - center
    codes = centred[candidates]  # (n, r, D)
    scores = torch.einsum("nd,nrd->nr", zc, codes) - 0.5 * codes.pow(2).sum(-1)
    return candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


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
        chunk_size: rows per chunk of the torch path; default keeps one (chunk, K) block near 4 MiB.
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
    z = z.detach()
    exact_dtype = torch.promote_types(z.dtype, torch.float32)
    dtype = search_dtype or _search_dtype(z, half_precision)
    reduced = dtype.itemsize < exact_dtype.itemsize
    center, centred, bias = argmax_form(codebook, exact_dtype)
    top = min(rerank, centred.shape[0]) if reduced else 1
    if temperature is None and not reduced and n and native_supports(z, centred):
        return native_forward(z, centred, None, centred, bias, gather=False)[0]
    chunk_size = chunk_size or default_chunk_size(centred.shape[0])
    out = torch.empty(n, dtype=torch.long, device=z.device)
    if temperature is None and n and triton_supports(z):
        if not reduced:
            return triton_candidates(z, centred, bias).squeeze(1)
        found = triton_candidates(z, centred, 0.5 * centred.pow(2).sum(-1), top=top, center=center, dot_dtype=dtype)
        for start in range(0, n, chunk_size):  # chunked: the (chunk, r, D) candidate codes stay small
            end = min(n, start + chunk_size)
            out[start:end] = _rerank(z[start:end], center, centred, found[start:end])
        return out

    # The bias is folded into the GEMM as one more feature, [z, 1]·[s, −h], so no (chunk, K) bias copy
    # precedes each product (addmm's); only the (chunk, D) rows are copied, into a buffer ending in ones.
    if reduced:  # centre z too: a reduced-precision z would lose its offset-free digits
        bias = 0.5 * centred.pow(2).sum(-1)
    codes_t = torch.cat([centred, bias.neg().unsqueeze(1)], dim=1).to(dtype).t()  # (D + 1, K)
    rows = torch.ones(min(chunk_size, n), centred.shape[1] + 1, dtype=dtype, device=z.device)
    buffer = torch.empty(min(chunk_size, n), centred.shape[0], dtype=dtype, device=z.device)

    def search_chunk(start: int, end: int) -> torch.Tensor:
        chunk = z[start:end]
        rows[: end - start, :-1].copy_(chunk.to(exact_dtype) - center if reduced else chunk)
        scores = buffer[: end - start]
        torch.mm(rows[: end - start], codes_t, out=scores)  # z·s_j − h_j
        if temperature is not None:
            # argmax(−d/τ + Gumbel) is a sample from softmax(−d/τ), −d = score − ½‖z − m‖² (row constant).
            logits = scores.float().div_(temperature)
            u = torch.rand(logits.shape, device=z.device, generator=generator).clamp_(min=1e-20)
            return logits.sub_(u.log_().neg_().log_()).argmax(dim=1)
        if reduced and top > 1:
            return _rerank(chunk, center, centred, scores.topk(top, dim=1).indices)
        return scores.argmax(dim=1)

    for start in range(0, n, chunk_size):
        end = min(n, start + chunk_size)
        out[start:end] = search_chunk(start, end)
    return out

