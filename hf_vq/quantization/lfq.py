"""`LookupFreeQuantizer`: lookup-free quantization (Yu et al., *Language Model Beats Diffusion —
Tokenizer is Key to Visual Generation*, MAGVIT-v2, ICLR 2024). The codebook is {−1, 1}^d, K = 2^d:

    q_i = sign(z_i) (+1 for z_i > 0, else −1), straight-through              LFQ (§3.1)
    k   = Σ_i [z_i > 0]·2^i                                                   index, least significant bit first
    L_ent = E_n[H(p(c | z_n))] − γ·H(E_n[p(c | z_n)])                         entropy penalty (§3.1)
    loss  = w_ent·L_ent + w_cmt·mean((z − sg q)²)

p(c | z) = softmax_c(−‖z − c‖²/τ) over the K codes. Because ‖z − c‖² = Σ_i (z_i − c_i)² it factorises over the
d bits, p(c_i = +1 | z) = σ(4z_i/τ), so the per-sample entropy is the sum of d binary entropies (exact, no
K-sized tensor). The batch term needs the K-vector E_n[p(c | z_n)]; it is computed exactly from an (N, K) log-
probability GEMM, O(N·K·d) time and memory: fine for K up to a few thousand, set entropy_weight=0 for very large
codebooks. Choices where the paper is silent: τ = 0.01, γ = 1, w_ent = 0.1 and w_cmt = 0.25 by default
(vector-quantize-pytorch's τ and w_ent; MAGVIT-v2 cites β = 0.25 for the commitment), and projections in/out
when dim != d, as vector-quantize-pytorch does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .fsq import project
from .layer import QuantizerOutput, check_features, check_indices, histogram_perplexity, unflatten_features
from .options import _is_int, _is_number, _require


@dataclass
class LFQOptions:
    """Validated `LookupFreeQuantizer` settings (see its docstring)."""

    dim: int
    codebook_size: int
    channel_first: bool = False
    projection_bias: bool = True
    entropy_weight: float = 0.1
    batch_entropy_weight: float = 1.0
    commitment_weight: float = 0.25
    temperature: float = 0.01

    def __post_init__(self) -> None:
        for name in ("dim", "codebook_size"):
            value = getattr(self, name)
            _require(_is_int(value), f"{name} must be an int, got {type(value).__name__}", TypeError)
            _require(value >= 1, f"{name} must be >= 1, got {value}")
        k = self.codebook_size
        nearest = 2 ** max(1, round(math.log2(k)))
        _require(k >= 2 and k & (k - 1) == 0,
                 f"codebook_size must be a power of two >= 2 (K = 2^bits), got {k}: e.g. {nearest}")
        for name in ("channel_first", "projection_bias"):
            _require(isinstance(getattr(self, name), bool),
                     f"{name} must be a bool, got {type(getattr(self, name)).__name__}", TypeError)
        for name in ("entropy_weight", "batch_entropy_weight", "commitment_weight", "temperature"):
            value = getattr(self, name)
            _require(_is_number(value), f"{name} must be a number, got {type(value).__name__}", TypeError)
            _require(math.isfinite(value) and value >= 0, f"{name} must be finite and >= 0, got {value}")
            setattr(self, name, float(value))
        _require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(σ(x)) in nats, elementwise, stable for large |x|."""
    p = torch.sigmoid(logits)
    return F.softplus(logits) - p * logits  # −p·log p − (1−p)·log(1−p) with log σ(x) = x − softplus(x)


def entropy_terms(z: torch.Tensor, bits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-sample entropy, batch entropy) in nats of p(c | z) = softmax_c(−‖z − c‖²/τ) over the codes.

    z: (N, d); bits: (K, d) 0/1 table of the codes' bits."""
    logits = 4 * z / temperature                                    # p(c_i = +1 | z) = σ(4z_i/τ)
    per_sample = binary_entropy(logits).sum(-1).mean()
    log_plus, log_minus = F.logsigmoid(logits), F.logsigmoid(-logits)
    log_probs = log_minus.sum(-1, keepdim=True) + (log_plus - log_minus) @ bits.t()  # (N, K): log Π_i p(c_i | z)
    avg = log_probs.exp().mean(0)
    batch = -(avg * avg.clamp_min(1e-12).log()).sum()
    return per_sample, batch


class LookupFreeQuantizer(nn.Module):
    """Lookup-free quantization with the `VectorQuantizer` output contract.

    Args:
        dim: feature width D of the input.
        codebook_size: K, a power of two; the code has d = log2 K bits.
        channel_first: input is (B, D, *spatial) instead of (..., D). Default False.
        projection_bias: the in/out projections (present when dim != d) have a bias. Default True.
        entropy_weight: w_ent of the entropy penalty. Default 0.1.
        batch_entropy_weight: γ, weight of the batch (codebook) entropy inside the penalty. Default 1.0.
        commitment_weight: w_cmt of mean((z − sg q)²), the encoder's commitment. Default 0.25.
        temperature: τ of p(c | z) = softmax(−‖z − c‖²/τ). Default 0.01.

    Shapes: input (..., D) or (B, D, *spatial); any floating dtype (computation in fp32, or fp64 for fp64
    input; autocast is disabled inside). Output `QuantizerOutput`: `loss` = w_ent·L_ent + w_cmt·commitment;
    `commitment` = mean((z − q)²) over all elements (after the in-projection), no gradient.
    """

    def __init__(self, dim: int, codebook_size: int, **options):
        super().__init__()
        unknown = sorted(set(options) - set(LFQOptions.names()))
        _require(not unknown, f"Unknown LookupFreeQuantizer option(s) {unknown}; valid: "
                 f"{', '.join(LFQOptions.names()[2:])}", TypeError)
        self.options = LFQOptions(dim, codebook_size, **options)
        self.dim, self.codebook_size, self.channel_first = dim, codebook_size, self.options.channel_first
        self.bits = codebook_size.bit_length() - 1
        self.register_buffer("_powers", 2 ** torch.arange(self.bits), persistent=False)
        bias = self.options.projection_bias
        self.project_in = nn.Linear(dim, self.bits, bias=bias) if dim != self.bits else None
        self.project_out = nn.Linear(self.bits, dim, bias=bias) if dim != self.bits else None

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, bits={self.bits}"

    def _bit_table(self, indices: torch.Tensor) -> torch.Tensor:
        """(...) int64 → (..., d) 0/1 float bits, least significant first."""
        return ((indices.long().unsqueeze(-1) // self._powers) % 2).float()

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The vectors `quantized` holds for int `indices`: (...) → (..., D), or (B, *S) → (B, D, *S) with
        channel_first ({−1, 1}^d codes, through the out projection when there is one)."""
        check_indices(indices, self.codebook_size)
        codes = project(self._bit_table(indices) * 2 - 1, self.project_out)
        return codes.movedim(-1, 1).contiguous() if self.channel_first else codes

    indices_to_codes = get_codes  # vector-quantize-pytorch's name

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) all codes in index order, as `quantized` holds them. Detached."""
        with torch.no_grad():
            return self.get_codes(torch.arange(self.codebook_size, device=self._powers.device))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        check_features(z, self.dim, self.channel_first, type(self).__name__)
        x = z.movedim(1, -1) if self.channel_first else z
        index_shape = tuple(x.shape[:-1])
        compute = torch.float64 if z.dtype == torch.float64 else torch.float32
        opts = self.options
        with torch.autocast(device_type=z.device.type, enabled=False):
            h = project(x.reshape(-1, self.dim).to(compute), self.project_in)
            positive = h.detach() > 0
            signs = positive.to(compute) * 2 - 1
            codes = signs + (h - h.detach())                                   # sign with straight-through
            indices = (positive.long() * self._powers).sum(-1)
            quantized = project(codes, self.project_out)
            commitment = F.mse_loss(h, signs) if h.numel() else h.new_zeros(())  # gradient to the encoder only
            loss = opts.commitment_weight * commitment
            if opts.entropy_weight and h.shape[0]:
                table = self._bit_table(torch.arange(self.codebook_size, device=h.device)).to(compute)
                per_sample, batch = entropy_terms(h, table, opts.temperature)
                loss = loss + opts.entropy_weight * (per_sample - opts.batch_entropy_weight * batch)
        counts = torch.bincount(indices, minlength=self.codebook_size)
        perplexity, active_codes = histogram_perplexity(counts)
        quantized = unflatten_features(quantized, index_shape, z.dtype, self.channel_first)
        return QuantizerOutput(quantized, indices.view(index_shape), loss.float(), commitment.detach().float(),
                               perplexity, active_codes)
