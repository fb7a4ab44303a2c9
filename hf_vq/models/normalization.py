"""`pre_quant_norm`: an explicit normalization of z_e right before the quantizer, as A.1 recommends ("placing
the VQ layer after an explicit normalization layer") and §5.3 motivates: z_e kept in a bounded region cannot
drift away from the codebook.

The normalization has no learnable elementwise affine. A learnable gain (and bias) after it would let the
encoder undo the bound the normalization gives, and the quantizer's own affine (eq 11) already carries the
codes to wherever the normalized z_e lie. It also adds no parameters: state dicts are the same with any
`pre_quant_norm`, and checkpoints saved before the option existed load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRE_QUANT_NORMS = ("none", "layernorm", "groupnorm")


def check_pre_quant_norm(value: object, allowed: tuple[str, ...], hint: str = "") -> None:
    """Raise `ValueError` naming the `pre_quant_norm` field unless `value` is one of `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"pre_quant_norm must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            + (f"; {hint}" if hint else "")
        )


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a channel-first tensor (B, D, *spatial): each position's D-vector is
    normalised to mean 0 and variance 1 on its own, as `nn.LayerNorm(D)` does for tokens. No learnable affine."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.movedim(1, -1), (self.dim,), eps=self.eps).movedim(-1, 1)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


def build_pre_quant_norm(
    kind: str, dim: int, channel_first: bool, eps: float, num_groups: int | None = None
) -> nn.Module:
    """The module applied to z_e before the quantizer, for a `kind` the model config has checked: `"none"` →
    identity; `"layernorm"` → over the D features of each vector (token or latent position); `"groupnorm"`
    (channel-first latents) → over `num_groups` groups of channels and all positions of each sample, as
    diffusers' GroupNorms."""
    if kind == "layernorm":
        return ChannelLayerNorm(dim, eps) if channel_first else nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
    if kind == "groupnorm":
        return nn.GroupNorm(num_groups, dim, eps=eps, affine=False)
    return nn.Identity()
