"""`GroupedVectorQuantizer`: the D features split into G groups of D/G, each quantized by its own
`VectorQuantizer` (own codebook of K codes): G·log2 K bits per vector, K^G combinations from G·K codes.

Choice where the papers are silent: α keeps its meaning for the whole vector. Each group's quantizer is
built with commitment_weight α/G and the groups' losses are summed, so loss = α·mean over all D features
of (z_e − z_q)², exactly a single `VectorQuantizer`'s α·L_cmt (A.1's mean-squared error), and every
gradient element (encoder, codebook, inner alternation steps) has a single layer's scale. `commitment` is
that mean over all features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .composite import MultiCodebookOutput, MultiCodebookQuantizer, check_count, combine, member_settings, split_options
from .layer import VectorQuantizer
from .options import QuantizerOptions, _require


@dataclass
class GroupOptions:
    """`GroupedVectorQuantizer`'s own options (the `VectorQuantizer` ones are shared by its groups).

    Attributes:
        num_groups: G; must divide dim. Default 2.
        group_options: None, or G dicts of `VectorQuantizer` options applied on top of the shared ones for
            each group. Default None.
    """

    num_groups: int = 2
    group_options: list[dict] | None = None

    def __post_init__(self) -> None:
        check_count("num_groups", self.num_groups)


class GroupedVectorQuantizer(MultiCodebookQuantizer):
    """Group vector quantization: G `VectorQuantizer`s, one per contiguous slice of D/G features.

    Args:
        dim: feature width D; a multiple of num_groups.
        codebook_size: K, codes per group.
        channel_first: input is (B, D, *spatial) instead of (..., D). Default False.
        num_groups, group_options: see `GroupOptions`.
        **options: `VectorQuantizer` options shared by every group; commitment_weight is α for the whole
            vector (each group's layer gets α/G).

    Output `MultiCodebookOutput`: `quantized` like the input (the groups' codes side by side), `indices`
    int64 (input shape without the feature axis, G), `loss` = α·L_cmt over all features, per-group statistics.
    """

    def __init__(self, dim: int, codebook_size: int, channel_first: bool = False, **options):
        super().__init__()
        self.options, settings = self.check_options(dim, codebook_size, channel_first, **options)
        self.dim, self.codebook_size, self.channel_first = dim, codebook_size, channel_first
        width = dim // self.options.num_groups
        self.groups = nn.ModuleList(VectorQuantizer(width, codebook_size, channel_first=channel_first, **s)
                                    for s in settings)

    @staticmethod
    def check_options(dim: int, codebook_size: int, channel_first: bool = False,
                      **options) -> tuple[GroupOptions, list[dict[str, Any]]]:
        """(the group options, each group's `VectorQuantizer` keyword arguments, α/G included), validated;
        allocates nothing. Raises TypeError/ValueError naming the option."""
        own, shared = split_options(options, GroupOptions)
        own = GroupOptions(**own)
        groups = own.num_groups
        check_count("dim", dim)
        _require(dim % groups == 0, f"num_groups={groups} must divide dim={dim} (each group quantizes dim/num_groups features)")
        settings = member_settings(dim // groups, codebook_size, channel_first, shared, own.group_options, groups,
                                   "group_options", "GroupedVectorQuantizer")
        alpha = QuantizerOptions.defaults()["commitment_weight"]
        for s in settings:
            s["commitment_weight"] = float(s.get("commitment_weight", alpha)) / groups  # Σ_g α/G·L_g = α·L (all features)
        return own, settings

    @property
    def num_groups(self) -> int:
        return self.options.num_groups

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, num_groups={self.num_groups}"

    def members(self) -> list[VectorQuantizer]:
        return list(self.groups)

    def forward(self, z: torch.Tensor) -> MultiCodebookOutput:
        axis = 1 if self.channel_first else -1
        _require(isinstance(z, torch.Tensor) and z.dim() > (axis == 1) and z.shape[axis] == self.dim,
                 f"GroupedVectorQuantizer input must be a tensor with dim={self.dim} features on axis {axis} "
                 f"(channel_first={self.channel_first}), got shape {tuple(getattr(z, 'shape', ()))}")
        outputs = [group(part) for group, part in zip(self.groups, z.chunk(self.num_groups, dim=axis))]
        quantized = torch.cat([o.quantized for o in outputs], dim=axis)
        indices = torch.stack([o.indices for o in outputs], dim=-1)
        loss = torch.stack([o.loss for o in outputs]).sum()
        commitment = torch.stack([o.commitment for o in outputs]).mean()  # equal-sized groups: the mean over all D
        return combine(quantized, indices, loss, commitment, outputs)

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """z_q for int `indices` (..., G): the groups' codes side by side, (..., D), or (B, D, *S) from
        (B, *S, G) with channel_first; what `quantized` holds (fp32)."""
        _require(isinstance(indices, torch.Tensor) and indices.dim() >= 1 and indices.shape[-1] == self.num_groups,
                 f"indices must be a tensor (..., num_groups={self.num_groups}), got shape "
                 f"{tuple(getattr(indices, 'shape', ()))}")
        return torch.cat([group.lookup(indices[..., g]) for g, group in enumerate(self.groups)],
                         dim=1 if self.channel_first else -1)

    lookup = get_codes  # VectorQuantizer's name, so models decode indices of any quantizer alike
