"""Data-dependent codebook initialisation: k-means++ seeding followed by Lloyd iterations (A.7).

Runs on whatever device the vectors live on (CPU or GPU) with the chunked search, so it needs neither
CUDA-only libraries nor an (N, K) distance matrix. With fewer vectors than codes it never shrinks the
codebook: the surplus codes are copies of data vectors plus small noise.
"""

from __future__ import annotations

import torch

from .search import nearest_code


def _min_sq_dist(z: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    return (z - center).pow(2).sum(-1)


@torch.no_grad()
def kmeans_plus_plus(z: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): (k, D) centers picked from the rows of z (N ≥ k)."""
    n = z.shape[0]
    first = torch.randint(n, (1,), device=z.device, generator=generator)
    centers = [z[first[0]]]
    d2 = _min_sq_dist(z, centers[0])
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # every vector already sits on a center: any pick is as good
            idx = torch.randint(n, (1,), device=z.device, generator=generator)[0]
        else:
            idx = torch.multinomial(d2 / total, 1, generator=generator)[0]
        centers.append(z[idx])
        d2 = torch.minimum(d2, _min_sq_dist(z, z[idx]))
    return torch.stack(centers)


@torch.no_grad()
def kmeans(
    z: torch.Tensor,
    k: int,
    iters: int = 10,
    *,
    noise_scale: float = 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cluster the rows of z into k centers.

    Args:
        z: (N, D) vectors; computed in fp32.
        k: number of centers (codebook size).
        iters: Lloyd iterations after seeding.
        noise_scale: when N < k, the k − N surplus centers are data vectors plus Gaussian noise of this
            std relative to the data's per-dimension std.
        generator: optional torch.Generator (seeding and noise).

    Returns:
        (k, D) fp32 centers.
    """
    z = z.detach().float()
    n = z.shape[0]
    m = min(n, k)
    centers = kmeans_plus_plus(z, m, generator=generator)
    for _ in range(iters):
        assign = nearest_code(z, centers, half_precision=False)
        sums = torch.zeros_like(centers).index_add_(0, assign, z)
        counts = torch.bincount(assign, minlength=m).to(z.dtype)
        nonempty = counts > 0
        # An empty cluster keeps its center (it is a data vector, so it cannot drift away from the data).
        centers[nonempty] = sums[nonempty] / counts[nonempty, None]
    if m < k:
        extra = torch.randint(n, (k - m,), device=z.device, generator=generator)
        std = z.std(0, unbiased=False) if n > 1 else z.new_ones(z.shape[1])
        noise = torch.randn((k - m, z.shape[1]), device=z.device, dtype=z.dtype, generator=generator)
        centers = torch.cat([centers, z[extra] + noise_scale * std.clamp_min(1e-6) * noise])
    return centers
