"""The paper's two toy experiments, run with `hf_vq.VectorQuantizer` itself.

- `figure3`: one code, a stationary target, SGD lr 0.1 (Figure 3): trajectories of the embedding z_e for
  no-VQ, joint, alternated and synchronized updates.
- `figure10`: 512 embeddings ~ 𝒩(0, 0.5·I), 128 codes ~ 𝒩((−1,−1), 0.3·I), 20 codebook updates with the
  commitment loss (Figure 10 / A.9): standard versus learnable-affine codebook.
"""

from __future__ import annotations

import math

import torch

from ..quantization import AlternatingOptimizer, VectorQuantizer

FIG3_METHODS = ("no_vq", "joint", "alternated", "synchronized")


def figure3(
    steps: int = 100,
    lr: float = 0.1,
    beta: float = 0.9,
    commitment_weight: float = 1.0,
    sync_nu: float = 1.0,
    z_init=(2.0, 0.0),
    code_init=(0.0, 2.0),
    target=(0.0, 0.0),
) -> dict[str, torch.Tensor]:
    """Trajectories (steps + 1, 2) of z_e per method, minimising L_task = ½‖z_q − target‖² (+ α·L_cmt).

    Choices (the paper gives only the learning rate): α = 1, β = 0.9, ν = 1, z_e starts at (2, 0), the
    code at (0, 2), the target at the origin. The alternated run takes one codebook step, then one
    embedding step with the updated code (k = 1).
    """
    target_t = torch.tensor(target)
    paths = {}
    for method in FIG3_METHODS:
        z = torch.nn.Parameter(torch.tensor(z_init))
        vq = VectorQuantizer(2, 1, beta=beta, commitment_weight=commitment_weight,
                             sync_nu=sync_nu if method == "synchronized" else 0.0)
        with torch.no_grad():
            vq.codebook_signal.copy_(torch.tensor([code_init]))
        if method == "alternated":
            AlternatingOptimizer(vq, torch.optim.SGD(vq.codebook_parameters(), lr=lr), inner_steps=1)
            opt = torch.optim.SGD([z], lr=lr)
        else:
            opt = torch.optim.SGD([z, vq.codebook_signal], lr=lr)
        path = [z.detach().clone()]
        for _ in range(steps):
            opt.zero_grad()
            if method == "no_vq":
                loss = 0.5 * (z - target_t).pow(2).sum()
            else:
                out = vq(z[None])
                loss = 0.5 * (out.quantized[0] - target_t).pow(2).sum() + out.loss
            loss.backward()
            opt.step()
            path.append(z.detach().clone())
        paths[method] = torch.stack(path)
    return paths


def path_summary(path: torch.Tensor, target=(0.0, 0.0), tol: float = 0.05) -> dict[str, float]:
    """Length of a trajectory, its final distance to the target, and the first step within `tol` of it."""
    dist = (path - torch.tensor(target)).norm(dim=1)
    within = (dist < tol).nonzero()
    return {
        "path_length": float((path[1:] - path[:-1]).norm(dim=1).sum()),
        "final_distance": float(dist[-1]),
        "steps_to_target": int(within[0]) if len(within) else -1,
    }


def figure10(affine: str | None, steps: int = 20, lr: float = 0.1, seed: int = 0, embedding: str = "isotropic",
             covariance: str = "diagonal") -> dict:
    """Codebook-only updates toward fixed embeddings (A.9). Returns the initial and final codebooks, the
    embeddings, the share of codes that moved, and the active codes (share of K) and divergence D(P, C) after.

    embedding: "isotropic" (the figure's 𝒩(0, 0.5·I)) or "rank1" (the same mean and total variance on the
    line through (1, 1), as z_e of a collapsed conv encoder); covariance: the affine's "diagonal" or "full"."""
    g = torch.Generator().manual_seed(seed)
    if embedding == "rank1":
        z = torch.randn(512, 1, generator=g) * torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]])
    else:
        z = math.sqrt(0.5) * torch.randn(512, 2, generator=g)
    codes = torch.tensor([-1.0, -1.0]) + math.sqrt(0.3) * torch.randn(128, 2, generator=g)
    # β = 1: only the codebook learns, as in the figure's "commitment loss with the codebook update only".
    # α = D/2 = 1 makes α·MSE the figure's ½‖·‖² per vector.
    vq = VectorQuantizer(2, 128, beta=1.0, commitment_weight=1.0, affine=affine, affine_covariance=covariance)
    with torch.no_grad():
        vq.codebook_signal.copy_(codes)
    opt = torch.optim.SGD(vq.parameters(), lr=lr)
    before = vq.codebook.clone()
    for _ in range(steps):
        opt.zero_grad()
        vq(z).loss.backward()
        opt.step()
    after = vq.codebook
    vq.eval()
    out = vq(z)
    moved = (after - before).norm(dim=1) > 1e-3
    return {
        "embeddings": z,
        "codebook_before": before,
        "codebook_after": after,
        "moved_fraction": float(moved.float().mean()),
        "active_codes": float(out.active_codes),
        "divergence": float(out.commitment),
    }
