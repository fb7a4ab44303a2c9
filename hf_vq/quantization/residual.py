"""`ResidualVectorQuantizer`: Q `VectorQuantizer`s on successive residuals (SoundStream, EnCodec).

    r_1 = z_e,   k_q = argmin_k ‖r_q − c^q_k‖ (eq 5 per level),   r_{q+1} = r_q − c^q_{k_q}
    z_q = Σ_{q ≤ n} c^q_{k_q},   ∂z_q/∂z_e = I                       (eq 7 on the sum)

n = Q, or fewer: `forward(z, num_levels=n)` decodes at a lower bitrate, and with `quantizer_dropout` each
training batch uses n drawn uniformly from [min_levels, Q] (SoundStream's quantizer dropout), so one model
serves every bitrate.

Choices where the papers are silent or differ:
- The straight-through is taken on the sum: each level passes the task gradient g to its input, so Σ over
  n levels would give z_e n·g (as a plain sum of per-level estimators does); the extra (n − 1)·g is
  removed, so the encoder gets g once, as from one quantizer. Each level's codebook still gets its own ν·g
  (eq 21): g is the gradient of the summed output, which every level's code is a term of.
- loss = the SUM of the levels' α·L_cmt (as SoundStream, EnCodec and vector-quantize-pytorch): each level's
  codebook and its pull on the encoder are those of a single quantizer with the same α, so α, β and ν keep
  their meaning per level, and the ratio of commitment to ν·g is a single layer's.
- `commitment` is the error of the output, mean((z_e − z_q)²), which is the last used level's L_cmt.
- Quantizer dropout runs every level in training and truncates the output to the first n: the dropped
  levels still quantize their residuals, add their α·L_cmt and update their state (LRU clock, EMA), but
  z_q and the decoder's gradient (straight-through, ν·g) involve the first n only. So every parameter is in
  every training graph (DDP with find_unused_parameters=False, as hf_vq's Accelerator runs, would fail on a
  skipped level's codebook), every level's LRU clock ticks once per step (a level that sat out a step would
  otherwise see all its codes age), and deep levels learn every step rather than in (Q − q + 1)/Q of them.
  SoundStream/EnCodec skip the dropped levels instead (cheaper by their searches). n is drawn from a
  generator seeded by the first level's step counter, identical on every rank (steps are synchronized) and
  after a resume; micro-batches of one optimizer step share it when steps are closed by `end_step`.
- Outside training only the first n levels run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .composite import MultiCodebookOutput, MultiCodebookQuantizer, check_count, combine, member_settings, split_options
from .layer import VectorQuantizer
from .options import _require

_DROPOUT_SALT = 0x5EED  # the dropout draw of step s is seeded with s + salt: one stream, apart from LRU's seeds


@dataclass
class ResidualOptions:
    """`ResidualVectorQuantizer`'s own options (the `VectorQuantizer` ones are shared by its levels).

    Attributes:
        num_levels: Q, the number of levels (codebooks). Default 4.
        quantizer_dropout: in training, use a random number n ∈ [min_levels, Q] of levels per batch.
            Default False.
        min_levels: the fewest levels quantizer dropout keeps. Default 1.
        level_options: None, or Q dicts of `VectorQuantizer` options applied on top of the shared ones for
            each level (e.g. `[{"affine": "learnable"}, {}, {}, {}]`). Default None.
    """

    num_levels: int = 4
    quantizer_dropout: bool = False
    min_levels: int = 1
    level_options: list[dict] | None = None

    def __post_init__(self) -> None:
        check_count("num_levels", self.num_levels)
        _require(isinstance(self.quantizer_dropout, bool),
                 f"quantizer_dropout must be a bool, got {type(self.quantizer_dropout).__name__}", TypeError)
        check_count("min_levels", self.min_levels)
        _require(self.min_levels <= self.num_levels,
                 f"min_levels must be <= num_levels={self.num_levels}, got {self.min_levels}")


class ResidualVectorQuantizer(MultiCodebookQuantizer):
    """Residual vector quantization: Q `VectorQuantizer` levels, each quantizing what the previous left.

    Args:
        dim: feature width D (every level quantizes D-dimensional residuals).
        codebook_size: K, codes per level (Q·log2 K bits per vector).
        channel_first: input is (B, D, *spatial) instead of (..., D). Default False.
        num_levels, quantizer_dropout, min_levels, level_options: see `ResidualOptions`.
        **options: `VectorQuantizer` options shared by every level (affine, sync_nu, replace_after, ...).

    Output `MultiCodebookOutput`: `quantized` like the input, `indices` int64 (input shape without the feature
    axis, n) for the n levels used, `loss` = Σ over the levels run of α·L_cmt, `commitment` =
    mean((z_e − z_q)²), per-level statistics of the n levels used.
    """

    def __init__(self, dim: int, codebook_size: int, channel_first: bool = False, **options):
        super().__init__()
        self.options, settings = self.check_options(dim, codebook_size, channel_first, **options)
        self.dim, self.codebook_size, self.channel_first = dim, codebook_size, channel_first
        self.levels = nn.ModuleList(VectorQuantizer(dim, codebook_size, channel_first=channel_first, **s) for s in settings)

    @staticmethod
    def check_options(dim: int, codebook_size: int, channel_first: bool = False,
                      **options) -> tuple[ResidualOptions, list[dict[str, Any]]]:
        """(the residual options, each level's `VectorQuantizer` keyword arguments), validated; allocates
        nothing. Raises TypeError/ValueError naming the option."""
        own, shared = split_options(options, ResidualOptions)
        own = ResidualOptions(**own)
        return own, member_settings(dim, codebook_size, channel_first, shared, own.level_options, own.num_levels,
                                    "level_options", "ResidualVectorQuantizer")

    @property
    def num_levels(self) -> int:
        return self.options.num_levels

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, codebook_size={self.codebook_size}, num_levels={self.num_levels}, "
                f"quantizer_dropout={self.options.quantizer_dropout}, min_levels={self.options.min_levels}")

    def members(self) -> list[VectorQuantizer]:
        return list(self.levels)

    def levels_to_use(self, num_levels: int | None = None) -> int:
        """n for the next forward: `num_levels`, else with quantizer dropout in training a draw from
        [min_levels, Q] seeded by the step counter (identical on every rank), else Q."""
        if num_levels is not None:
            _require(isinstance(num_levels, int) and not isinstance(num_levels, bool) and 1 <= num_levels <= self.num_levels,
                     f"num_levels must be an int in [1, {self.num_levels}], got {num_levels!r}")
            return num_levels
        if self.training and self.options.quantizer_dropout:
            generator = torch.Generator().manual_seed(int(self.levels[0].num_steps) + _DROPOUT_SALT)
            return int(torch.randint(self.options.min_levels, self.num_levels + 1, (), generator=generator))
        return self.num_levels

    def forward(self, z: torch.Tensor, num_levels: int | None = None) -> MultiCodebookOutput:
        n = self.levels_to_use(num_levels)
        _require(isinstance(z, torch.Tensor) and z.is_floating_point(),
                 f"ResidualVectorQuantizer input must be a floating-point torch.Tensor, got {getattr(z, 'dtype', type(z))}",
                 TypeError)
        # Residuals in fp32 (fp64 for fp64 input), as the levels compute: c_1 + c_2 + ... summed in the input's
        # half precision would lose the small late-level codes.
        x = z if z.dtype in (torch.float32, torch.float64) else z.float()
        outputs, residual = [], x
        for level in self.levels[: self.num_levels if self.training else n]:
            out = level(residual)
            outputs.append(out)
            residual = residual - out.quantized.detach()
        used = outputs[:n]
        # Each level's straight-through passes g to z_e: remove n − 1 of them (the term is exactly 0 in value).
        quantized = sum(o.quantized for o in used) - (n - 1) * (x - x.detach())
        indices = torch.stack([o.indices for o in used], dim=-1)
        loss = torch.stack([o.loss for o in outputs]).sum()
        return combine(quantized.to(z.dtype), indices, loss, used[-1].commitment, used)

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """z_q for int `indices` (..., n) with n ≤ Q (the first n levels): Σ_q c^q[indices[..., q]],
        (..., D), or (B, D, *S) from (B, *S, n) with channel_first; what `quantized` holds (fp32)."""
        _require(isinstance(indices, torch.Tensor) and indices.dim() >= 1 and 1 <= indices.shape[-1] <= self.num_levels,
                 f"indices must be a tensor (..., n) with 1 <= n <= num_levels={self.num_levels} on the last axis, got "
                 f"shape {tuple(getattr(indices, 'shape', ()))}")
        return sum(level.lookup(indices[..., q]) for q, level in enumerate(self.levels[: indices.shape[-1]]))

    lookup = get_codes  # VectorQuantizer's name, so models decode indices of any quantizer alike
