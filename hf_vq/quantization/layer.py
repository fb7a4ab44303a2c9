"""`VectorQuantizer`: the improved VQ layer of Huh et al. (ICML 2023), drop-in for any PyTorch model."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import all_gather_rows, all_reduce_sum, broadcast, is_distributed
from .affine import EMAAffine, LearnableAffine, apply_affine, invert_affine
from .kmeans import kmeans
from .replacement import OptimizerStateResetter, sample_replacements, update_idle_steps
from .search import nearest_code
from .straight_through import straight_through

DISTANCES = ("euclidean", "cosine")
CODEBOOK_UPDATES = ("gradient", "ema")
AFFINES = (None, "learnable", "ema")


@dataclass
class QuantizerOutput:
    """Output of `VectorQuantizer.forward`.

    Attributes:
        quantized: z_q, same shape and dtype as the input; its value is the selected code vectors and its
            gradient is the straight-through estimate (eq 7), plus ν·g to the codebook (eq 21).
        indices: int64 code indices, the input's shape without the feature axis.
        loss: α·L_cmt (eq 10), fp32 scalar; add it to the task loss.
        commitment: L_cmt = mean over vectors of ½‖z_e − z_q‖² (eqs 8–9), fp32 scalar, no gradient.
        perplexity: 2^H of the batch's code histogram (§5.1), fp32 scalar.
        usage: fraction of the K codes selected at least once in the batch, fp32 scalar.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    commitment: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


def _require(condition: bool, message: str, error: type[Exception] = ValueError) -> None:
    if not condition:
        raise error(message)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def histogram_perplexity(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity 2^H(p), fraction of codes used) of a (K,) code histogram."""
    counts = counts.float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()  # nats; 2^H(bits) = e^H(nats)
    return entropy.exp(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """Vector quantization layer with the techniques of *Straightening Out the Straight-Through Estimator*.

    Args:
        dim: feature width D of the vectors to quantize.
        codebook_size: number of codes K.
        channel_first: input is (B, D, *spatial) instead of (..., D). Default False.
        distance: "euclidean" (default) or "cosine" (inputs and codes l2-normalised: the paper's "+ l2").
        beta: β ∈ [0, 1] of eqs 8–9, the codebook's share of the commitment loss. Default 0.95.
        commitment_weight: α of eq 10. Default 5.0. Note d = ½‖·‖² summed over D (§2), so α here is
            D/2 times the α of an element-wise-MSE implementation.
        codebook_update: "gradient" (default) or "ema": the β = 1 / EMA rule c ← (1−γ)c + γ·mean(z_e)
            (eq 11, A.2) with γ = 1 − ema_decay; the codebook then takes no gradient.
        ema_decay: 1 − γ for codebook_update="ema". Default 0.99.
        affine: None (default), "learnable" (A.1) or "ema" (A.12): shared affine re-parameterisation
            c = c_mean + c_std ⊙ c_signal (eq 15).
        affine_lr_scale: s in scale = 1 + s·θ_scale, bias = s·θ_bias (A.1). Default 1.0.
        affine_momentum: momentum m of the "ema" affine statistics (eqs 38–41). Default 0.1.
        affine_groups: codebook subsets with their own affine parameters; must divide K. Default 1.
        sync_nu: ν of the synchronized update (eq 21). Default 0.0.
        replace_after: LRU replacement (§3): replace a code unused for this many consecutive training
            steps; 0 (default) disables it. The paper uses 20.
        replace_noise: std of the noise added to a replacement vector, relative to the batch's
            per-dimension std. Default 0.01.
        kmeans_init: initialise the codebook by k-means on the first training batch (A.7). Default False.
        kmeans_iters: Lloyd iterations for kmeans_init. Default 10.
        stochastic_temperature: τ of the stochastic baseline (eq 12); codes are sampled ∝ exp(−d/τ) in
            training. None (default) = deterministic. Set `vq.stochastic_temperature` to anneal.
        chunk_size: vectors per search chunk; None picks ~64 MiB distance blocks (A.1).
        half_precision_search: on CUDA compute distances in bf16/fp16 and gather from fp32 (A.1).
        check_finite: raise on NaN/Inf input in training (one reduction and host sync per call).
        step_on_forward: each training forward is one LRU step. Set False under gradient accumulation
            and call `end_step()` once per optimizer step (`hf_vq.quantization.end_step(model)`).

    Shapes: input (..., D) or (B, D, *spatial) with channel_first; any floating dtype (computation in
    fp32, or fp64 for fp64 input; autocast is disabled inside). Output `QuantizerOutput`.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        channel_first: bool = False,
        distance: str = "euclidean",
        beta: float = 0.95,
        commitment_weight: float = 5.0,
        codebook_update: str = "gradient",
        ema_decay: float = 0.99,
        affine: str | None = None,
        affine_lr_scale: float = 1.0,
        affine_momentum: float = 0.1,
        affine_groups: int = 1,
        sync_nu: float = 0.0,
        replace_after: int = 0,
        replace_noise: float = 0.01,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        stochastic_temperature: float | None = None,
        chunk_size: int | None = None,
        half_precision_search: bool = True,
        check_finite: bool = True,
        step_on_forward: bool = True,
    ):
        super().__init__()
        _require(_is_int(dim), f"dim must be an int, got {type(dim).__name__}", TypeError)
        _require(dim >= 1, f"dim must be >= 1, got {dim}")
        _require(_is_int(codebook_size), f"codebook_size must be an int, got {type(codebook_size).__name__}", TypeError)
        _require(codebook_size >= 1, f"codebook_size must be >= 1, got {codebook_size}")
        _require(distance in DISTANCES, f"distance must be one of {DISTANCES}, got {distance!r}")
        for name, value in (("beta", beta), ("commitment_weight", commitment_weight), ("ema_decay", ema_decay),
                            ("affine_lr_scale", affine_lr_scale), ("affine_momentum", affine_momentum),
                            ("sync_nu", sync_nu), ("replace_noise", replace_noise)):
            _require(_is_number(value), f"{name} must be a number, got {type(value).__name__}", TypeError)
            _require(math.isfinite(value), f"{name} must be finite, got {value}")
        _require(0.0 <= beta <= 1.0, f"beta must be in [0, 1] (eqs 8-9), got {beta}")
        _require(commitment_weight >= 0, f"commitment_weight (alpha) must be >= 0, got {commitment_weight}")
        _require(codebook_update in CODEBOOK_UPDATES, f"codebook_update must be one of {CODEBOOK_UPDATES}, got {codebook_update!r}")
        _require(0.0 <= ema_decay < 1.0, f"ema_decay must be in [0, 1), got {ema_decay}")
        _require(affine in AFFINES, f"affine must be one of {AFFINES}, got {affine!r}")
        _require(
            not (codebook_update == "ema" and affine is not None),
            f"codebook_update='ema' sets the codes directly in embedding space, so affine={affine!r} has "
            "nothing to learn: use codebook_update='gradient' with an affine, or affine=None with 'ema'",
        )
        _require(affine_lr_scale > 0, f"affine_lr_scale must be > 0, got {affine_lr_scale}")
        _require(0.0 < affine_momentum <= 1.0, f"affine_momentum must be in (0, 1], got {affine_momentum}")
        _require(_is_int(affine_groups), f"affine_groups must be an int, got {type(affine_groups).__name__}", TypeError)
        _require(affine_groups >= 1 and codebook_size % affine_groups == 0,
                 f"affine_groups must be >= 1 and divide codebook_size={codebook_size}, got {affine_groups}")
        _require(sync_nu >= 0, f"sync_nu must be >= 0, got {sync_nu}")
        _require(_is_int(replace_after), f"replace_after must be an int (steps), got {type(replace_after).__name__}", TypeError)
        _require(replace_after >= 0, f"replace_after must be >= 0 (0 disables LRU replacement), got {replace_after}")
        _require(replace_noise >= 0, f"replace_noise must be >= 0, got {replace_noise}")
        _require(isinstance(kmeans_init, bool), f"kmeans_init must be a bool, got {type(kmeans_init).__name__}", TypeError)
        _require(_is_int(kmeans_iters) and kmeans_iters >= 0, f"kmeans_iters must be an int >= 0, got {kmeans_iters!r}")
        _require(stochastic_temperature is None or (_is_number(stochastic_temperature) and stochastic_temperature > 0),
                 f"stochastic_temperature must be None or a number > 0, got {stochastic_temperature!r}")
        _require(chunk_size is None or (_is_int(chunk_size) and chunk_size >= 1),
                 f"chunk_size must be None or an int >= 1, got {chunk_size!r}")

        self.dim = dim
        self.codebook_size = codebook_size
        self.channel_first = channel_first
        self.distance = distance
        self.beta = float(beta)
        self.commitment_weight = float(commitment_weight)
        self.codebook_update = codebook_update
        self.ema_decay = float(ema_decay)
        self.affine_mode = affine
        self.affine_groups = affine_groups
        self.sync_nu = float(sync_nu)
        self.replace_after = replace_after
        self.replace_noise = float(replace_noise)
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.stochastic_temperature = stochastic_temperature
        self.chunk_size = chunk_size
        self.half_precision_search = half_precision_search
        self.check_finite = check_finite
        self.step_on_forward = step_on_forward

        # c_signal of eq 15 (the plain codebook when there is no affine).
        self.codebook_signal = nn.Parameter(torch.empty(codebook_size, dim), requires_grad=codebook_update == "gradient")
        if affine == "learnable":
            self.affine = LearnableAffine(dim, affine_groups, affine_lr_scale)
        elif affine == "ema":
            self.affine = EMAAffine(dim, affine_groups, affine_momentum)
        else:
            self.affine = None
        # Running state; all persistent so a checkpoint resumes the same LRU clock and init status.
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("num_steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("code_usage", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("_step_hits", torch.zeros(codebook_size, dtype=torch.long), persistent=False)
        self.register_buffer("last_replaced", torch.zeros(0, dtype=torch.long), persistent=False)
        self._optimizer_state = OptimizerStateResetter()
        self._inner = None  # set by AlternatingOptimizer
        self._bypass = False
        self.reset_parameters()

    # ------------------------------------------------------------------ parameters and views
    def reset_parameters(self) -> None:
        """Kaiming-normal codebook (std √(2/D), the paper's 𝒩_kaiming), identity affine, fresh counters."""
        with torch.no_grad():
            self.codebook_signal.normal_(0.0, math.sqrt(2.0 / self.dim))
            if self.affine is not None:
                self.affine.reset_parameters()
            self.initialized.fill_(False)
            self.num_steps.zero_()
            self.code_usage.zero_()
            self.idle_steps.zero_()
            self._step_hits.zero_()

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, codebook_size={self.codebook_size}, distance={self.distance!r}, beta={self.beta}, "
                f"commitment_weight={self.commitment_weight}, affine={self.affine_mode!r}, sync_nu={self.sync_nu}, "
                f"replace_after={self.replace_after}, codebook_update={self.codebook_update!r}")

    def codebook_parameters(self) -> list[nn.Parameter]:
        """Parameters of the codebook (c_signal and learnable affine): give them their own optimizer
        group without weight decay (A.1), or to an `AlternatingOptimizer`."""
        params = [self.codebook_signal] if self.codebook_signal.requires_grad else []
        if isinstance(self.affine, LearnableAffine):
            params += [self.affine.scale, self.affine.bias]
        return params

    def _affine_params(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.affine.params() if self.affine is not None else None

    def _raw_codebook(self) -> torch.Tensor:
        """Codes with the affine applied (eq 15), before any l2 normalisation; differentiable."""
        affine = self._affine_params()
        if affine is None:
            return self.codebook_signal
        return apply_affine(self.codebook_signal, *affine)

    def _output_codebook(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        codebook = self._raw_codebook()
        if dtype is not None:
            codebook = codebook.to(dtype)
        return F.normalize(codebook, dim=-1) if self.distance == "cosine" else codebook

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) effective code vectors that `quantized` is made of: affine applied, l2-normalised in
        cosine mode. Detached."""
        return self._output_codebook().detach()

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for int `indices`: (...) → (..., D), or (B, *S) → (B, D, *S) with channel_first."""
        _require(not indices.is_floating_point() and not indices.is_complex(),
                 f"indices must be an integer tensor, got {indices.dtype}", TypeError)
        if indices.numel():
            _require(int(indices.min()) >= 0 and int(indices.max()) < self.codebook_size,
                     f"indices must lie in [0, {self.codebook_size}), got range [{int(indices.min())}, {int(indices.max())}]")
        out = F.embedding(indices.long(), self._output_codebook())
        if self.channel_first:
            out = out.movedim(-1, 1).contiguous()  # same layout as forward's output (conv kernels differ otherwise)
        return out

    @torch.no_grad()
    def fold_affine(self) -> "VectorQuantizer":
        """Bake the affine into plain codes (c_signal ← c_mean + c_std ⊙ c_signal) and drop it, so inference
        needs no affine. Outputs are unchanged. Returns self."""
        if self.affine is not None:
            self.codebook_signal.copy_(self._raw_codebook())
            self.affine = None
            self.affine_mode = None
        return self

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Let LRU replacement zero this optimizer's state rows (momentum, Adam moments) of replaced codes."""
        self._optimizer_state.attach(optimizer)

    @contextlib.contextmanager
    def bypass(self) -> Iterator[None]:
        """Within this context forward returns its input unquantized and touches no state: the "no-VQ"
        pass of the gradient-gap measurement (A.3)."""
        previous, self._bypass = self._bypass, True
        try:
            yield
        finally:
            self._bypass = previous

    # ------------------------------------------------------------------ input handling
    def _check_input(self, z: torch.Tensor) -> None:
        _require(isinstance(z, torch.Tensor), f"VectorQuantizer input must be a torch.Tensor, got {type(z).__name__}", TypeError)
        _require(z.is_floating_point(),
                 f"VectorQuantizer input must be a floating-point tensor, got {z.dtype}: cast it with .float()", TypeError)
        axis = 1 if self.channel_first else -1
        _require(z.dim() >= (2 if self.channel_first else 1),
                 f"VectorQuantizer input with channel_first={self.channel_first} needs at least "
                 f"{2 if self.channel_first else 1} dims, got shape {tuple(z.shape)}")
        _require(z.shape[axis] == self.dim,
                 f"VectorQuantizer input has feature width {z.shape[axis]} on axis {axis} (shape {tuple(z.shape)}), "
                 f"but dim={self.dim}" + (
                     "; for (B, D, H, W) inputs pass channel_first=True" if not self.channel_first and z.dim() > 2
                     and z.shape[1] == self.dim else ""))

    def _flatten(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(N, D) view/copy of z in compute dtype, and the shape of the index tensor."""
        if self.channel_first:
            z = z.movedim(1, -1)
        compute = torch.float64 if (z.dtype == torch.float64 or self.codebook_signal.dtype == torch.float64) else torch.float32
        return z.reshape(-1, self.dim).to(compute), tuple(z.shape[:-1])

    def _unflatten(self, z_q: torch.Tensor, index_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        z_q = z_q.view(*index_shape, self.dim).to(dtype)
        if self.channel_first:
            # contiguous in the input's (B, D, *S) layout: a channels-last view makes conv kernels differ.
            z_q = z_q.movedim(-1, 1).contiguous()
        return z_q

    # ------------------------------------------------------------------ training-time state
    @torch.no_grad()
    def _init_codebook_from(self, z: torch.Tensor) -> None:
        """k-means on the first training batch (pooled over ranks), computed on rank 0 and broadcast."""
        pool = all_gather_rows(z.detach().contiguous())
        if pool.shape[0] == 0:  # no rank has a vector yet: try again on the next batch
            return
        centers = torch.empty(self.codebook_size, self.dim, device=z.device, dtype=z.dtype)
        if not is_distributed() or torch.distributed.get_rank() == 0:
            gen = torch.Generator(device=z.device).manual_seed(int(self.num_steps) + 1234)
            centers.copy_(kmeans(pool, self.codebook_size, self.kmeans_iters, generator=gen))
        broadcast(centers)
        self._set_codes(torch.arange(self.codebook_size, device=z.device), centers)
        if isinstance(self.affine, EMAAffine):
            self.affine.reset_parameters()
        self.initialized.fill_(True)

    @torch.no_grad()
    def _set_codes(self, index: torch.Tensor, vectors: torch.Tensor) -> None:
        """Make the effective codes at `index` equal `vectors`, inverting the current affine so the new
        code lands where intended (not the raw row with the affine applied on top)."""
        affine = self._affine_params()
        if affine is not None:
            vectors = invert_affine(vectors, index, *affine, self.codebook_size // self.affine_groups)
        self.codebook_signal[index] = vectors.to(self.codebook_signal.dtype)

    @torch.no_grad()
    def _replace_dead_codes(self, z: torch.Tensor) -> None:
        dead = (self.idle_steps >= self.replace_after).nonzero().squeeze(1)
        self.last_replaced = dead
        if dead.numel() == 0:
            return
        step = int(self.num_steps)  # the same on every rank: steps are synced
        rank = torch.distributed.get_rank() if is_distributed() else 0
        vectors = sample_replacements(
            z, dead.numel(), noise_scale=self.replace_noise, generator=torch.Generator().manual_seed(step),
            local_generator=torch.Generator().manual_seed((step + 1) * 65537 + rank),
        )
        if vectors is None:
            return
        self._set_codes(dead, vectors)
        self.idle_steps[dead] = 0
        self._optimizer_state.reset_rows(self.codebook_signal, dead)

    @torch.no_grad()
    def end_step(self) -> None:
        """Close one training step for LRU: all-reduce this step's code hits, age unused codes, add to
        `code_usage`. Called by forward when `step_on_forward`; otherwise once per optimizer step."""
        hits = all_reduce_sum(self._step_hits)
        update_idle_steps(self.idle_steps, hits)
        self.code_usage.add_(hits)
        self.num_steps.add_(1)
        self._step_hits.zero_()

    @torch.no_grad()
    def _ema_codebook_update(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """eq 11 per code: c_k ← (1−γ)c_k + γ·mean{z_e,i : k_i = k}; global means under DDP."""
        stats = z.new_zeros(self.codebook_size, self.dim + 1)
        stats[:, :-1].index_add_(0, indices, z)
        stats[:, -1].index_add_(0, indices, z.new_ones(z.shape[0]))
        all_reduce_sum(stats)
        hit = stats[:, -1] > 0
        means = stats[hit, :-1] / stats[hit, -1:]
        self.codebook_signal[hit] = torch.lerp(self.codebook_signal[hit], means.to(self.codebook_signal.dtype), 1.0 - self.ema_decay)

    def _search(self, z: torch.Tensor, codebook: torch.Tensor, stochastic: bool) -> torch.Tensor:
        return nearest_code(
            z, codebook, chunk_size=self.chunk_size, half_precision=self.half_precision_search,
            temperature=self.stochastic_temperature if stochastic else None,
        )

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self._check_input(z)
        in_dtype = z.dtype
        flat, index_shape = self._flatten(z)
        training = self.training and not self._bypass
        # A finite sum proves every element finite (one reduction); the exact check only runs when it
        # is not (a NaN/Inf, or finite values whose sum overflows).
        if training and self.check_finite and not bool(torch.isfinite(flat.sum())):
            _require(bool(torch.isfinite(flat).all()),
                     "VectorQuantizer received NaN or Inf in its input during training; fix the upstream "
                     "activations (or pass check_finite=False to skip this check)")
        with torch.autocast(device_type=flat.device.type, enabled=False):
            if self._bypass:
                zero = flat.new_zeros((), dtype=torch.float32)
                return QuantizerOutput(z, torch.zeros(index_shape, dtype=torch.long, device=z.device), zero, zero, zero, zero)
            if training and self.kmeans_init and not bool(self.initialized):
                self._init_codebook_from(F.normalize(flat, dim=-1) if self.distance == "cosine" else flat)
            if training and self.replace_after > 0:
                self._replace_dead_codes(flat.detach())

            z_in = F.normalize(flat, dim=-1) if self.distance == "cosine" else flat
            indices = None
            inner = training and self._inner is not None and torch.is_grad_enabled()
            if inner:
                indices = self._inner.run(self, z_in.detach())
            codebook = self._output_codebook(z_in.dtype)
            if self.codebook_update == "ema":
                codebook = codebook.detach().clone()  # updated in place below; the graph keeps this copy
            if indices is None:
                indices = self._search(z_in, codebook, stochastic=training)
            z_q, loss, commitment = straight_through(
                z_in, codebook, indices, sync_nu=self.sync_nu, commitment_weight=self.commitment_weight,
                beta=self.beta, codebook_term=self.codebook_update == "gradient" and not inner,
            )
            counts = torch.bincount(indices, minlength=self.codebook_size)
            perplexity, usage = histogram_perplexity(counts)

            if training:
                with torch.no_grad():
                    self._step_hits.add_(counts)
                    if isinstance(self.affine, EMAAffine):
                        group = indices // (self.codebook_size // self.affine_groups)
                        self.affine.update(z_in.detach(), group, self.codebook_signal)
                    if self.codebook_update == "ema":
                        self._ema_codebook_update(z_in.detach(), indices)
                if self.step_on_forward:
                    self.end_step()

        return QuantizerOutput(
            quantized=self._unflatten(z_q, index_shape, in_dtype),
            indices=indices.view(index_shape),
            loss=loss.float(),
            commitment=commitment.float(),
            perplexity=perplexity,
            usage=usage,
        )
