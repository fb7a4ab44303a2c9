"""The quantizer's forward and backward passes over (N, D) rows, native where the kernels run, else torch.

Convention-free: the coefficients of the loss are the caller's (straight_through.py). For indices k_i,
z_q,i = c[k_i] and upstream gradient g = ∂L/∂z_q (None = 0):

    quantize_forward:  k (searched when not given), z_q and sse = Σ_i ‖z_i − z_q,i‖²  (float64)
    quantize_backward: ∂z_i = g_i + a·(z_i − z_q,i)
                       ∂c_k = Σ_{i: k_i = k} ν·g_i + b·(z_q,i − z_i)   (rows added in index order)

Both paths round every element identically (the same products and sums in the same order), so the
gradients are bit-identical between them for any thread count; sse agrees to float64 rounding. Neither
keeps an (N, D) temporary beyond what it returns: the native kernel works row by row, the torch path in
row chunks of about 1 MiB.
"""

from __future__ import annotations

import torch

from ..search import argmax_form, nearest_code
from .cpu_extension import native_backward, native_forward, native_supports

# Elements of one (chunk, D) temporary of the torch path.
CHUNK_ELEMENTS = 2**18


def row_chunks(n: int, d: int):
    """(start, end) of consecutive row blocks of an (n, d) tensor, about CHUNK_ELEMENTS elements each."""
    step = max(1, CHUNK_ELEMENTS // max(1, d))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _nonzero(x: float | torch.Tensor) -> bool:
    return isinstance(x, torch.Tensor) or x != 0


@torch.no_grad()
def quantize_forward(
    z: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor | None = None, **search_options
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(indices, z_q, sse): the nearest codes (or the given `indices`), their vectors and Σ‖z − z_q‖².

    Args:
        z: (N, D) float vectors; codebook: (K, D) codes, same dtype and device.
        indices: (N,) int64, or None to search (eq 5) in the same pass.
        search_options: keyword arguments of `nearest_code` (chunk_size, half_precision, temperature,
            generator), used when searching; the native fused search runs for the exact argmin on CPU.

    Returns:
        indices (N,) int64, z_q (N, D) like z, sse float64 scalar tensor.
    """
    if native_supports(z, codebook):
        if indices is None and search_options.get("temperature") is None:
            _, centred, bias = argmax_form(codebook, z.dtype)
            return native_forward(z, codebook, None, centred, bias)
        if indices is None:
            indices = nearest_code(z, codebook, **search_options)
        return native_forward(z, codebook, indices)
    if indices is None:
        indices = nearest_code(z, codebook, **search_options)
    z_q = codebook.index_select(0, indices)
    sse = torch.zeros((), dtype=torch.float64, device=z.device)
    for start, end in row_chunks(*z.shape):
        sse += (z[start:end] - z_q[start:end]).double().square_().sum()  # each difference rounded as the kernel's
    return indices, z_q, sse


@torch.no_grad()
def quantize_backward(
    z: torch.Tensor,
    codebook: torch.Tensor,
    indices: torch.Tensor,
    grad_zq: torch.Tensor | None,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    nu: float,
    *,
    need_z: bool = True,
    need_codebook: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(∂z, ∂codebook) as in the module docstring; None where not needed.

    Args:
        z: (N, D); codebook: (K, D); indices: (N,) int64 of the forward; grad_zq: (N, D) or None.
        a, b: the coefficients of (z − z_q) in ∂z and of (z_q − z) in ∂codebook: floats, or 0-dim
            tensors on z's device (a CUDA caller then needs no host sync). A float 0 skips its term.
        nu: the coefficient of g in ∂codebook.
    """
    if z.device.type == "cpu":  # reading a CPU scalar costs nothing, and both paths then skip the same zeros
        a, b = float(a), float(b)
    if native_supports(z, codebook, grad_zq):
        return native_backward(z, codebook, indices, grad_zq, a, b, nu, need_z=need_z, need_codebook=need_codebook)
    grad_z = torch.empty_like(z) if need_z else None
    grad_codebook = torch.zeros_like(codebook) if need_codebook else None
    for start, end in row_chunks(*z.shape):
        idx = indices[start:end]
        g = grad_zq[start:end] if grad_zq is not None else None
        diff = z[start:end] - codebook.index_select(0, idx)  # z − z_q
        if grad_z is not None:
            out = grad_z[start:end]
            if _nonzero(a):
                torch.mul(diff, a, out=out)
                if g is not None:
                    out.add_(g)
            elif g is not None:
                out.copy_(g)
            else:
                out.zero_()
        if grad_codebook is not None:
            rows = g * nu if g is not None and nu else None
            if _nonzero(b):
                step = diff.neg_().mul_(b)  # b·(z_q − z)
                rows = step if rows is None else rows.add_(step)
            if rows is not None:
                grad_codebook.index_add_(0, idx, rows)
    return grad_z, grad_codebook
