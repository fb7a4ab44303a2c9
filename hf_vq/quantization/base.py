"""The contract every hf_vq quantizer follows, so models, training loops and metrics treat them alike.

A quantizer is a `Quantizer` module: `forward(z)` with z (..., D), or (B, D, *spatial) when `channel_first`,
returns a `QuantizerOutput`; it has `dim` (D), `codebook_size` (K, implicit for FSQ/LFQ), `channel_first`,
`get_codes(indices)` (the vectors `quantized` holds) and `codebook_parameters()` (what trains as codes: no
weight decay, the inner optimizer of the alternated optimization). `VectorQuantizer`, the residual and grouped
quantizers made of it, `FiniteScalarQuantizer` and `LookupFreeQuantizer` are all `Quantizer`s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """Output of `VectorQuantizer.forward`.

    Attributes:
        quantized: z_q, same shape and dtype as the input; its value is the selected code vectors and its
            gradient is the straight-through estimate (eq 7), plus ν·g to the codebook (eq 21).
        indices: int64 code indices, the input's shape without the feature axis.
        loss: α·L_cmt (eq 10), fp32 scalar; add it to the task loss.
        commitment: L_cmt = mean over all elements of (z_e − z_q)² (eqs 8–9 with A.1's mean-squared
            error), fp32 scalar, no gradient.
        perplexity: 2^H of the batch's code histogram (§5.1), fp32 scalar.
        active_codes: fraction of the K codes selected at least once in the batch (Table 1's "Active"),
            fp32 scalar.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    commitment: torch.Tensor
    perplexity: torch.Tensor
    active_codes: torch.Tensor

    @property
    def usage(self) -> torch.Tensor:
        """Deprecated alias of `active_codes` (removed in 0.3)."""
        warnings.warn("QuantizerOutput.usage is deprecated; use .active_codes", FutureWarning, stacklevel=2)
        return self.active_codes


def histogram_perplexity(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity 2^H(p), active codes: fraction of codes used) of a (K,) code histogram."""
    counts = counts.float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()  # nats; 2^H(bits) = e^H(nats)
    return entropy.exp(), (counts > 0).float().mean()


class Quantizer(nn.Module):
    """Base class of every quantizer (see the module docstring for the contract)."""

    dim: int
    codebook_size: int
    channel_first: bool

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The vectors `quantized` holds for int `indices` (`get_codes`)."""
        return self.get_codes(indices)

    def codebook_parameters(self) -> list[nn.Parameter]:
        """Parameters trained as codes (none for a quantizer without a learned codebook)."""
        return []


def model_quantizers(module: nn.Module) -> list[Quantizer]:
    """The quantizers a model calls: each outermost `Quantizer` of `module` (a residual quantizer, not its
    levels; `find_quantizers` lists the `VectorQuantizer`s inside instead)."""
    found, inside = [], set()
    for m in module.modules():
        if id(m) not in inside and isinstance(m, Quantizer):
            found.append(m)
            inside.update(id(sub) for sub in m.modules())
    return found
