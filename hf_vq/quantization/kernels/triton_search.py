"""Nearest-code search on CUDA as one Triton kernel: the fused design of vq_cpu.cpp on the GPU.

Each program takes BLOCK_M rows and walks the codebook in tiles of BLOCK_N codes: `tl.dot` of the row
tile and the code tile (fp32 accumulation; operands in bf16/fp16 for the reduced-precision search of A.1,
or in IEEE fp32), minus the per-code bias, then the running best `top` (score, index) pairs per row are
updated in registers. No score leaves the chip; only (N, top) candidate indices are written, which the
caller re-scores in fp32 when the operands were reduced (search.py). Triton ships with torch's CUDA
wheels, so there is no build step; without it the torch path runs.
"""

from __future__ import annotations

import os

import torch

from .cpu_extension import native_disabled

try:  # transformers' remote-code import check skips try blocks: Triton stays optional there too
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

_DOT_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_kernels: dict = {}


def triton_supports(z: torch.Tensor) -> bool:
    """Whether the Triton kernel takes this float32 CUDA input (Triton installed, not disabled)."""
    return triton is not None and z.is_cuda and z.dtype == torch.float32 and not native_disabled()


if triton is not None:

    def _nearest_code_tiles(
        z_ptr, codes_ptr, bias_ptr, center_ptr, out_ptr, n, k, d, stride_z, stride_c,
        CENTER: tl.constexpr, DOT: tl.constexpr, TOP: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < n
        cols = tl.arange(0, BLOCK_N)
        slots = tl.arange(0, TOP)
        best = tl.full((BLOCK_M, TOP), float("-inf"), tl.float32)
        arg = tl.zeros((BLOCK_M, TOP), tl.int32)
        for start in range(0, k, BLOCK_N):
            codes = start + cols
            code_ok = codes < k
            acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
            for d0 in range(0, d, BLOCK_D):
                dims = d0 + tl.arange(0, BLOCK_D)
                dim_ok = dims < d
                x = tl.load(z_ptr + rows[:, None] * stride_z + dims[None, :], mask=row_ok[:, None] & dim_ok[None, :],
                            other=0.0)
                if CENTER:  # reduced operands lose the digits a common offset would take
                    x = x - tl.load(center_ptr + dims, mask=dim_ok, other=0.0)[None, :]
                c = tl.load(codes_ptr + codes[None, :] * stride_c + dims[:, None],
                            mask=code_ok[None, :] & dim_ok[:, None], other=0.0)
                if DOT == "fp32":
                    acc += tl.dot(x, c, input_precision="ieee")  # not TF32: this search is exact
                elif DOT == "bf16":
                    acc += tl.dot(x.to(tl.bfloat16), c.to(tl.bfloat16))
                else:
                    acc += tl.dot(x.to(tl.float16), c.to(tl.float16))
            scores = acc - tl.load(bias_ptr + codes, mask=code_ok, other=float("inf"))[None, :]  # padding: −inf
            for _ in tl.static_range(TOP):
                # the tile's best goes in place of the row's worst kept candidate when it beats it (strictly:
                # at a tie the earlier code stays, and tl.argmax takes the first maximum within the tile)
                top_score = tl.max(scores, 1)
                top_col = tl.argmax(scores, 1)
                worst = tl.min(best, 1)
                replace = (slots[None, :] == tl.argmin(best, 1)[:, None]) & (top_score > worst)[:, None]
                best = tl.where(replace, top_score[:, None], best)
                arg = tl.where(replace, (start + top_col)[:, None], arg)
                if TOP > 1:
                    scores = tl.where(cols[None, :] == top_col[:, None], float("-inf"), scores)
        tl.store(out_ptr + rows[:, None] * TOP + slots[None, :], arg, mask=row_ok[:, None])


def _kernel():
    """The jitted kernel, made on first use so that TRITON_INTERPRET set by then is honoured."""
    interpret = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")
    if interpret not in _kernels:
        _kernels[interpret] = triton.jit(_nearest_code_tiles)
    return _kernels[interpret]


def triton_candidates(
    z: torch.Tensor,
    codes: torch.Tensor,
    bias: torch.Tensor,
    *,
    top: int = 1,
    center: torch.Tensor | None = None,
    dot_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The `top` best j of (z_i − m)·s_j − h_j per row (m = `center`, or 0), unordered; (N, top') int64.

    Args:
        z: (N, D) float32; codes: (K, D) float32 s; bias: (K,) float32 h.
        top: candidates kept per row, rounded up to a power of two (1 = the argmax itself).
        center: (D,) subtracted from z inside the kernel (the reduced-precision search centres z).
        dot_dtype: operand dtype of the tile products: float32 (IEEE, exact), bfloat16 or float16.
    """
    if triton is None:
        raise RuntimeError("Triton is not installed")
    n, d = z.shape
    k = codes.shape[0]
    top = 1 << max(0, top - 1).bit_length()
    z, codes, bias = z.contiguous(), codes.contiguous().float(), bias.contiguous().float()
    out = torch.empty(n, top, dtype=torch.int32, device=z.device)
    block_d = min(64, max(16, triton.next_power_of_2(d)))
    block_m, block_n = 64, 64
    _kernel()[(triton.cdiv(n, block_m),)](
        z, codes, bias, center if center is not None else bias, out, n, k, d, z.stride(0), codes.stride(0),
        CENTER=center is not None, DOT=_DOT_DTYPES[dot_dtype], TOP=top,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
    )
    return out.long()
