"""`FiniteScalarQuantizer`: finite scalar quantization (Mentzer et al., *Finite Scalar Quantization: VQ-VAE
Made Simple*, ICLR 2024). No codebook: each of d = len(levels) channels is bounded and rounded to L_i values.

    z_b = tanh(z + shift)·h − offset,  h = (L − 1)(1 − ε)/2                   bound (§3, A.1)
    ẑ   = round(z_b) / ⌊L/2⌋  with ∂ẑ/∂z_b = 1/⌊L/2⌋                             round, straight-through
    k   = Σ_i (round(z_b)_i + ⌊L_i/2⌋)·Π_{j<i} L_j                               mixed-radix index, K = Π L_i

Odd L gives the symmetric grid {−1, …, 1}; even L needs the half-level offset (offset = ½) and gives
{−1, …, 1 − 1/⌊L/2⌋}. Choices: shift = atanh(offset/h), so that z = 0 maps to the grid's 0 (the paper's A.1
code writes tan, an acknowledged slip; vector-quantize-pytorch uses atanh); ε = 1e-3 as in A.1. When `dim`
differs from len(levels), a linear projection in (dim → d) and out (d → dim) surrounds the quantizer, as
vector-quantize-pytorch does; `quantized` and the codes are then in the projected-out space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layer import QuantizerOutput, check_features, check_indices, histogram_perplexity, unflatten_features
from .options import _is_int, _require

BOUND_EPS = 1e-3  # A.1's ε: tanh's range shrinks by it, so the extreme levels stay strictly inside


def project(x: torch.Tensor, linear: nn.Linear | None) -> torch.Tensor:
    """`linear(x)` computed in x's dtype (the weights cast to it), or x itself when there is no projection."""
    if linear is None:
        return x
    bias = linear.bias.to(x.dtype) if linear.bias is not None else None
    return F.linear(x, linear.weight.to(x.dtype), bias)


@dataclass
class FSQOptions:
    """Validated `FiniteScalarQuantizer` settings (see its docstring)."""

    dim: int
    levels: tuple[int, ...]
    channel_first: bool = False
    projection_bias: bool = True

    def __post_init__(self) -> None:
        _require(_is_int(self.dim) and self.dim >= 1, f"dim must be an int >= 1, got {self.dim!r}")
        _require(isinstance(self.levels, Sequence) and not isinstance(self.levels, str) and len(self.levels) > 0,
                 f"levels must be a non-empty sequence of ints (e.g. [8, 5, 5, 5]), got {self.levels!r}", TypeError)
        _require(all(_is_int(n) for n in self.levels), f"levels must hold ints, got {list(self.levels)}", TypeError)
        # A level of 2 under this bound puts the decision boundary at z ≈ −3.8 instead of 0 (half-level offset
        # with h ≈ ½): such a channel almost never flips. Binary codes are LookupFreeQuantizer's job.
        _require(all(n >= 3 for n in self.levels),
                 f"every level must be >= 3, got {list(self.levels)}: use e.g. [8, 5, 5, 5]; for binary codes "
                 "use LookupFreeQuantizer")
        self.levels = tuple(int(n) for n in self.levels)
        _require(math.prod(self.levels) < 2**62, f"levels give more than 2**62 codes: {list(self.levels)}")
        for name in ("channel_first", "projection_bias"):
            _require(isinstance(getattr(self, name), bool),
                     f"{name} must be a bool, got {type(getattr(self, name)).__name__}", TypeError)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


class FiniteScalarQuantizer(nn.Module):
    """Finite scalar quantization with the `VectorQuantizer` output contract.

    Args:
        dim: feature width D of the input.
        levels: number of values L_i of each quantized channel, e.g. (8, 8, 8) for K = 512 codes. Every
            L_i >= 3. The paper's recommendations: K≈2^8 (8, 6, 5), 2^10 (8, 5, 5, 5), 2^12 (7, 5, 5, 5, 5),
            2^14 (8, 8, 8, 6, 5), 2^16 (8, 8, 8, 5, 5, 5).
        channel_first: input is (B, D, *spatial) instead of (..., D). Default False.
        projection_bias: the in/out projections (present when dim != len(levels)) have a bias. Default True.

    Shapes: input (..., D) or (B, D, *spatial); any floating dtype (computation in fp32, or fp64 for fp64
    input; autocast is disabled inside). Output `QuantizerOutput`: `loss` is 0 (FSQ needs no auxiliary
    loss); `commitment` is the rounding error mean((z_b − round(z_b))²)/⌊L/2⌋² in code units (no gradient);
    perplexity and active_codes over the K = Π L_i implicit codes.
    """

    def __init__(self, dim: int, levels: Sequence[int], **options):
        super().__init__()
        unknown = sorted(set(options) - set(FSQOptions.names()))
        _require(not unknown, f"Unknown FiniteScalarQuantizer option(s) {unknown}; valid: "
                 f"{', '.join(FSQOptions.names()[2:])}", TypeError)
        self.options = FSQOptions(dim, levels, **options)
        self.dim, self.levels, self.channel_first = dim, self.options.levels, self.options.channel_first
        self.codebook_size = math.prod(self.levels)
        levels_t = torch.tensor(self.levels, dtype=torch.long)
        self.register_buffer("_levels", levels_t, persistent=False)
        basis = torch.cumprod(torch.cat([levels_t.new_ones(1), levels_t[:-1]]), 0)  # Π_{j<i} L_j
        self.register_buffer("_basis", basis, persistent=False)
        d, bias = len(self.levels), self.options.projection_bias
        self.project_in = nn.Linear(dim, d, bias=bias) if dim != d else None
        self.project_out = nn.Linear(d, dim, bias=bias) if dim != d else None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={list(self.levels)}, codebook_size={self.codebook_size}"

    # ------------------------------------------------------------------ the grid
    def _half_width(self, dtype: torch.dtype) -> torch.Tensor:
        return (self._levels // 2).to(dtype)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """z_b = tanh(z + shift)·h − offset, in (−⌊L/2⌋ − ½, ⌊L/2⌋ + ½) per channel; z_b(0) = 0."""
        levels = self._levels.to(z.dtype)
        half = (levels - 1) * (1 - BOUND_EPS) / 2
        offset = (1 - self._levels % 2).to(z.dtype) * 0.5  # the half-level offset of even levels
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., d) grid codes (before the out projection) → (...) int64 indices (mixed radix)."""
        half = self._half_width(codes.dtype)
        digits = torch.round(codes * half).long() + self._levels // 2
        return (digits * self._basis).sum(-1)

    def indices_to_grid(self, indices: torch.Tensor) -> torch.Tensor:
        """(...) int indices → (..., d) fp32 grid codes (before the out projection)."""
        digits = (indices.long().unsqueeze(-1) // self._basis) % self._levels
        half = self._half_width(torch.float32)
        return (digits - self._levels // 2).float() / half

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The vectors `quantized` holds for int `indices`: (...) → (..., D), or (B, *S) → (B, D, *S) with
        channel_first (grid codes, through the out projection when there is one)."""
        check_indices(indices, self.codebook_size)
        codes = project(self.indices_to_grid(indices), self.project_out)
        return codes.movedim(-1, 1).contiguous() if self.channel_first else codes

    indices_to_codes = get_codes  # vector-quantize-pytorch's name

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) all implicit codes, in index order, as `quantized` holds them. Detached."""
        with torch.no_grad():
            return project(self.indices_to_grid(torch.arange(self.codebook_size, device=self._levels.device)),
                                 self.project_out)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_features(z, self.dim, self.channel_first, type(self).__name__)
        x = z.movedim(1, -1) if self.channel_first else z
        index_shape = tuple(x.shape[:-1])
        compute = torch.float64 if z.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=z.device.type, enabled=False):
            h = project(x.reshape(-1, self.dim).to(compute), self.project_in)
            bounded = self.bound(h)
            half = self._half_width(compute)
            rounded = torch.round(bounded)
            grid = (rounded + (bounded - bounded.detach())) / half     # round with straight-through; value exact
            indices = self.codes_to_indices(rounded.detach() / half)
            quantized = project(grid, self.project_out)
            commitment = ((bounded.detach() - rounded) / half).pow(2).mean() if h.numel() else h.new_zeros(())
        counts = torch.bincount(indices, minlength=self.codebook_size)
        perplexity, active_codes = histogram_perplexity(counts)
        quantized = unflatten_features(quantized, index_shape, z.dtype, self.channel_first)
        loss = torch.zeros((), dtype=torch.float32, device=z.device)
        return QuantizerOutput(quantized, indices.view(index_shape), loss, commitment.float(), perplexity,
                               active_codes)
