"""The rotation trick (Fifty et al., *Restructuring Vector Quantization with the Rotation Trick*, ICLR 2025).

The forward value stays z_q = q = c[k]; the gradient reaches z_e through sg[λR]·z_e instead of the identity:

    λ = ‖q‖ / ‖e‖,   R = I − 2rrᵀ + 2q̂êᵀ,   r = (ê + q̂) / ‖ê + q̂‖          (§4.2, Householder form)

R is the rotation in the plane of e and q that takes ê to q̂, so λR·e = q. The backward needs only the
vector-Jacobian product, which is three dot products per row and never forms a D×D matrix:

    ∂L/∂z_e = λRᵀg = λ(g − 2r(r·g) + 2ê(q̂·g))

Degenerate rows (choice, the paper does not define them): where ‖e‖ or ‖q‖ is 0 the map is undefined (λ
infinite or the rotation axis missing), and the row falls back to the identity (plain straight-through).
Where ê = −q̂ exactly, r is 0 and R = I − 2êêᵀ, the reflection that takes ê to q̂ (still orthogonal).
"""

from __future__ import annotations

import torch

from .kernels.fused_quantize import row_chunks

# Below this norm a vector has no direction to rotate (F.normalize's default eps).
EPS = 1e-12


def rotation_trick_gradient(e: torch.Tensor, q: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """λRᵀg per row: the gradient reaching e (N, D) from the upstream gradient `grad` (N, D) at q (N, D).

    Computed in row chunks, so no temporary beyond a chunk's (n, D) rows is kept besides the result."""
    out = torch.empty_like(grad)
    for start, end in row_chunks(*e.shape):
        out[start:end] = _rotate_back(e[start:end], q[start:end], grad[start:end])
    return out


def _rotate_back(e: torch.Tensor, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    e_norm = e.norm(dim=-1, keepdim=True)
    q_norm = q.norm(dim=-1, keepdim=True)
    e_hat = e / e_norm.clamp_min(EPS)
    q_hat = q / q_norm.clamp_min(EPS)
    r = torch.nn.functional.normalize(e_hat + q_hat, dim=-1, eps=EPS)
    dot = lambda a, b: (a * b).sum(-1, keepdim=True)  # noqa: E731
    rotated = g - 2 * r * dot(r, g) + 2 * e_hat * dot(q_hat, g)  # Rᵀg with R = I − 2rrᵀ + 2q̂êᵀ
    defined = (e_norm > EPS) & (q_norm > EPS)
    return torch.where(defined, rotated * (q_norm / e_norm.clamp_min(EPS)), g)  # λ = ‖q‖/‖e‖
