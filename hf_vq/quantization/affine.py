"""Shared affine re-parameterisation of the codebook (§4.1, eq 15; A.1; A.12).

    c_i = c_mean + c_std ⊙ c_signal_i                                          (eq 15)

Codes are split into `groups` contiguous blocks of K / groups codes; each block has its own (c_mean,
c_std), "distinct affine parameters to each codebook subset" (§4.1). Because every code is a function of
the shared parameters, every code moves when they move, selected or not.

Two ways to obtain (scale, bias) = (c_std, c_mean):
- `LearnableAffine` (A.1): scale = 1 + s·θ_scale, bias = s·θ_bias, θ initialised at 0, s = affine_lr_scale.
- `EMAAffine` (A.12): moment matching. Running means/variances of z_e and of the raw code vectors are
  kept with momentum m, and scale = σ_e / σ_c, bias = μ_e − scale·μ_c, which maps the codebook's moments
  onto the embedding's. Choice: A.12's eqs 43–45 write the statistics of z_q and have garbled labels;
  we follow A.9 ("compute the moments of both z_e and C") and the authors' code, which match the raw
  codebook C: statistics of z_q, the affine's own output, would feed back into themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import all_reduce_sum


def apply_affine(codebook: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(K, D) raw codes → (K, D) effective codes, group g using scale[g], bias[g] (eq 15)."""
    groups = scale.shape[0]
    k, d = codebook.shape
    return (codebook.view(groups, k // groups, d) * scale[:, None] + bias[:, None]).view(k, d)


def invert_affine(codes: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, group_size: int):
    """Raw code vectors that the affine maps onto `codes` (M, D) at code indices `index` (M,)."""
    g = index // group_size
    return (codes - bias[g]) / scale[g]


class LearnableAffine(nn.Module):
    """Learnable shared affine (A.1). Parameters `scale`, `bias`: (groups, D), zero-initialised."""

    def __init__(self, dim: int, groups: int = 1, lr_scale: float = 1.0):
        super().__init__()
        self.lr_scale = lr_scale
        self.scale = nn.Parameter(torch.zeros(groups, dim))
        self.bias = nn.Parameter(torch.zeros(groups, dim))

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return 1.0 + self.lr_scale * self.scale, self.lr_scale * self.bias

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.scale)
        nn.init.zeros_(self.bias)


class EMAAffine(nn.Module):
    """Moment-matching affine from running statistics (A.12, eqs 38–45), momentum m (default 0.1).

    Buffers (groups, D): `ze_mean`, `ze_var`, `code_mean`, `code_var`; `initialized` (bool scalar). The
    first update copies the batch statistics instead of blending them with the identity placeholders.
    Under torch.distributed, the z_e statistics are all-reduced (sums and counts), so every rank holds
    the statistics of the global batch.
    """

    def __init__(self, dim: int, groups: int = 1, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("ze_mean", torch.zeros(groups, dim))
        self.register_buffer("ze_var", torch.ones(groups, dim))
        self.register_buffer("code_mean", torch.zeros(groups, dim))
        self.register_buffer("code_var", torch.ones(groups, dim))
        self.register_buffer("initialized", torch.tensor(False))

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        # eqs 43–45 with the labels put right: scale = σ_e/σ_c, bias = μ_e − scale·μ_c. eps keeps a
        # constant (zero-variance) dimension finite instead of dividing by zero.
        scale = ((self.ze_var + self.eps) / (self.code_var + self.eps)).sqrt()
        return scale, self.ze_mean - scale * self.code_mean

    def reset_parameters(self) -> None:
        self.ze_mean.zero_()
        self.ze_var.fill_(1.0)
        self.code_mean.zero_()
        self.code_var.fill_(1.0)
        self.initialized.fill_(False)

    @torch.no_grad()
    def update(self, z: torch.Tensor, group_of_vector: torch.Tensor, codebook: torch.Tensor) -> None:
        """One EMA step (eqs 38–41).

        z: (N, D) fp32 embeddings; group_of_vector: (N,) codebook group of each vector's selected code;
        codebook: (K, D) raw code vectors. A group that no vector (on any rank) selected keeps its z_e
        statistics.
        """
        groups, d = self.ze_mean.shape
        z = z.to(self.ze_mean.dtype)
        stats = z.new_zeros(groups, 2 * d + 1)
        stats[:, :d].index_add_(0, group_of_vector, z)
        stats[:, d : 2 * d].index_add_(0, group_of_vector, z * z)
        stats[:, -1].index_add_(0, group_of_vector, z.new_ones(z.shape[0]))
        all_reduce_sum(stats)
        count = stats[:, -1:]
        seen = count[:, 0] > 0
        mean = stats[:, :d] / count.clamp_min(1)
        var = (stats[:, d : 2 * d] / count.clamp_min(1) - mean * mean).clamp_min(0)

        codes = codebook.detach().to(z.dtype).view(groups, -1, d)
        c_mean, c_var = codes.mean(1), codes.var(1, unbiased=False)

        m = 1.0 if not bool(self.initialized) else self.momentum
        self.ze_mean[seen] = torch.lerp(self.ze_mean[seen], mean[seen], m)
        self.ze_var[seen] = torch.lerp(self.ze_var[seen], var[seen], m)
        self.code_mean.lerp_(c_mean, m)
        self.code_var.lerp_(c_var, m)
        self.initialized.fill_(True)
