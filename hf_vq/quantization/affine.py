"""Shared affine re-parameterisation of the codebook (§4.1, eq 15; A.1; A.12), diagonal or full.

    c_i = c_mean + c_std ⊙ c_signal_i                                   (eq 15, "diagonal", the paper's)
    c_i = c_mean + W · c_signal_i                                       ("full": W a D×D matrix, beyond the paper)

Codes are split into `groups` contiguous blocks of K / groups codes; each block has its own parameters,
"distinct affine parameters to each codebook subset" (§4.1). Because every code is a function of the shared
parameters, every code moves when they move, selected or not.

Why a full matrix: a diagonal scale matches each dimension's moments but cannot turn an axis-aligned code
cloud onto a correlated or low-rank embedding (in small conv autoencoders z_e collapses to nearly rank 1
within ~100 steps: the diagonal affine then keeps only 1–3% of the codes within reach). A full W can.

Two ways to obtain the parameters:
- learnable (A.1): scale = 1 + s·θ_scale (W = I + s·Θ), bias = s·θ_bias, θ initialised at 0, s = lr scale.
- "ema" (A.12): moment matching from running statistics of z_e and of the raw codes with momentum m.
  Diagonal: scale = σ_e/σ_c, bias = μ_e − scale·μ_c. Full: W = Σ_e^½ Σ_c^−½ (whiten the codes, colour
  them with the embedding's covariance; the symmetric square roots give the W closest to a pure scaling),
  bias = μ_e − W μ_c. Choice: A.12's eqs 43–45 write the statistics of z_q and have garbled labels; we
  follow A.9 ("compute the moments of both z_e and C") and the authors' code, which match the raw codebook
  C: statistics of z_q, the affine's own output, would feed back into themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import all_reduce_sum

COVARIANCES = ("diagonal", "full")


def apply_affine(codebook: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(K, D) raw codes → (K, D) effective codes (eq 15). scale: (G, D) diagonal or (G, D, D) matrices W;
    bias: (G, D); code block g uses scale[g], bias[g]."""
    groups = scale.shape[0]
    k, d = codebook.shape
    blocks = codebook.view(groups, k // groups, d)
    mapped = blocks @ scale.transpose(1, 2) if scale.dim() == 3 else blocks * scale[:, None]
    return (mapped + bias[:, None]).view(k, d)


def invert_affine(codes: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, group_size: int):
    """Raw code vectors that the affine maps onto `codes` (M, D) at code indices `index` (M,)."""
    g = index // group_size
    shifted = codes - bias[g]
    if scale.dim() == 3:
        return torch.linalg.solve(scale[g], shifted.unsqueeze(-1)).squeeze(-1)
    return shifted / scale[g]


def _symmetric_power(cov: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    """cov^power for symmetric PSD (…, D, D) matrices, eigenvalues floored at eps."""
    values, vectors = torch.linalg.eigh(cov)
    return (vectors * values.clamp_min(eps).pow(power).unsqueeze(-2)) @ vectors.transpose(-1, -2)


class LearnableAffine(nn.Module):
    """Learnable shared affine (A.1). `scale`: (groups, D) or, full, (groups, D, D) θ; `bias`: (groups, D);
    all zero-initialised, so the affine starts as the identity."""

    def __init__(self, dim: int, groups: int = 1, lr_scale: float = 1.0, covariance: str = "diagonal"):
        super().__init__()
        self.lr_scale = lr_scale
        self.full = covariance == "full"
        self.scale = nn.Parameter(torch.zeros((groups, dim, dim) if self.full else (groups, dim)))
        self.bias = nn.Parameter(torch.zeros(groups, dim))

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale or W, bias) of eq 15: 1 + s·θ_scale (I + s·Θ), s·θ_bias."""
        d = self.scale.shape[-1]
        identity = torch.eye(d, dtype=self.scale.dtype, device=self.scale.device) if self.full else 1.0
        return identity + self.lr_scale * self.scale, self.lr_scale * self.bias

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.scale)
        nn.init.zeros_(self.bias)


class EMAAffine(nn.Module):
    """Moment-matching affine from running statistics (A.12, eqs 38–45), momentum m (default 0.1).

    Buffers: `ze_mean`, `code_mean` (groups, D); `ze_var`, `code_var` (groups, D), or, full, (groups, D, D)
    covariances; `initialized` (bool scalar). The first update copies the batch statistics instead of
    blending them with the identity placeholders. Under torch.distributed, the z_e statistics are
    all-reduced (sums and counts), so every rank holds the statistics of the global batch.
    """

    def __init__(self, dim: int, groups: int = 1, momentum: float = 0.1, eps: float = 1e-5,
                 covariance: str = "diagonal"):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.full = covariance == "full"
        spread = torch.eye(dim).repeat(groups, 1, 1) if self.full else torch.ones(groups, dim)
        self.register_buffer("ze_mean", torch.zeros(groups, dim))
        self.register_buffer("ze_var", spread.clone())
        self.register_buffer("code_mean", torch.zeros(groups, dim))
        self.register_buffer("code_var", spread.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.full:
            # W = Σ_e^½ Σ_c^−½, bias = μ_e − W μ_c; eps keeps a degenerate direction finite.
            scale = _symmetric_power(self.ze_var, 0.5, self.eps) @ _symmetric_power(self.code_var, -0.5, self.eps)
            return scale, self.ze_mean - (scale @ self.code_mean.unsqueeze(-1)).squeeze(-1)
        # eqs 43–45 with the labels put right: scale = σ_e/σ_c, bias = μ_e − scale·μ_c. eps keeps a
        # constant (zero-variance) dimension finite instead of dividing by zero.
        scale = ((self.ze_var + self.eps) / (self.code_var + self.eps)).sqrt()
        return scale, self.ze_mean - scale * self.code_mean

    def reset_parameters(self) -> None:
        self.ze_mean.zero_()
        self.code_mean.zero_()
        d = self.ze_mean.shape[1]
        spread = torch.eye(d, dtype=self.ze_var.dtype, device=self.ze_var.device) if self.full else 1.0
        self.ze_var.zero_().add_(spread)
        self.code_var.zero_().add_(spread)
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
        second = (z[:, :, None] * z[:, None, :]).reshape(-1, d * d) if self.full else z * z
        stats = z.new_zeros(groups, d + second.shape[1] + 1)
        stats[:, :d].index_add_(0, group_of_vector, z)
        stats[:, d:-1].index_add_(0, group_of_vector, second)
        stats[:, -1].index_add_(0, group_of_vector, z.new_ones(z.shape[0]))
        all_reduce_sum(stats)
        count = stats[:, -1:].clamp_min(1)
        seen = stats[:, -1] > 0
        mean = stats[:, :d] / count
        codes = codebook.detach().to(z.dtype).view(groups, -1, d)
        c_mean = codes.mean(1)
        if self.full:
            var = (stats[:, d:-1] / count).view(groups, d, d) - mean[:, :, None] * mean[:, None, :]
            centred = codes - c_mean[:, None]
            c_var = centred.transpose(1, 2) @ centred / codes.shape[1]
        else:
            var = (stats[:, d:-1] / count - mean * mean).clamp_min(0)
            c_var = codes.var(1, unbiased=False)

        m = 1.0 if not bool(self.initialized) else self.momentum
        self.ze_mean[seen] = torch.lerp(self.ze_mean[seen], mean[seen], m)
        self.ze_var[seen] = torch.lerp(self.ze_var[seen], var[seen], m)
        self.code_mean.lerp_(c_mean, m)
        self.code_var.lerp_(c_var, m)
        self.initialized.fill_(True)


def build_affine(kind: str | None, dim: int, groups: int, covariance: str, lr_scale: float,
                 momentum: float) -> nn.Module | None:
    """The affine module for `VectorQuantizer(affine=kind, ...)`: None, "learnable" or "ema"."""
    if kind == "learnable":
        return LearnableAffine(dim, groups, lr_scale, covariance)
    if kind == "ema":
        return EMAAffine(dim, groups, momentum, covariance=covariance)
    return None


@torch.no_grad()
def affine_statistics(affine: nn.Module | None) -> dict[str, float]:
    """Summary of an affine's map, for logs: the spread of its scale (diagonal entries, or the singular
    values of W for a full affine) and the norm of its bias, over all groups. Empty without an affine."""
    if affine is None:
        return {}
    scale, bias = affine.params()
    spread = torch.linalg.svdvals(scale.float()) if scale.dim() == 3 else scale.float().abs()
    return {"affine_scale_min": float(spread.min()), "affine_scale_mean": float(spread.mean()),
            "affine_scale_max": float(spread.max()), "affine_bias_norm": float(bias.float().norm(dim=-1).mean())}
