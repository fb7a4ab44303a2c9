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
    # λRᵀg = λg + α_e·e + α_q·q: with r = (ê + q̂)/s, s² = 2 + 2ê·q̂ and t = 2(ê·g + q̂·g)/s²,
    # λ(g − 2r(r·g) + 2ê(q̂·g)) = λg + λ(2q̂·g − t)/‖e‖·e − λt/‖q‖·q; five row dot products, one (n, D) output.
    dot = torch.linalg.vecdot
    e_norm, q_norm = dot(e, e).sqrt(), dot(q, q).sqrt()
    defined = (e_norm > EPS) & (q_norm > EPS)
    e_norm, q_norm = e_norm.clamp_min(EPS), q_norm.clamp_min(EPS)
    cos = dot(e, q) / (e_norm * q_norm)
    eg, qg = dot(e, g) / e_norm, dot(q, g) / q_norm             # ê·g, q̂·g
    s2 = 2 + 2 * cos
    t = torch.where(s2 > EPS**2, 2 * (eg + qg) / s2.clamp_min(EPS**2), 0.0)  # ê = −q̂: r = 0, R = I − 2êêᵀ
    lam = torch.where(defined, q_norm / e_norm, 1.0)            # undefined rows: identity (straight-through)
    alpha_e = torch.where(defined, lam * (2 * qg - t) / e_norm, 0.0)
    alpha_q = torch.where(defined, -lam * t / q_norm, 0.0)
    out = g * lam.unsqueeze(-1)
    out.addcmul_(e, alpha_e.unsqueeze(-1))
    return out.addcmul_(q, alpha_q.unsqueeze(-1))
