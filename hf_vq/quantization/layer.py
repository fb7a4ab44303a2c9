"""`VectorQuantizer`: the improved VQ layer of Huh et al. (ICML 2023), drop-in for any PyTorch model.

The forward runs in named stages, each next to the equations it implements:

    prepare the codebook     k-means init (A.7), LRU replacement of dead codes (§3)
    inner steps              alternated optimization, codebook only (eq 17; alternating.py)
    effective codebook       c = c_mean + c_std ⊙ c_signal (eq 15; affine.py)
    assign                   nearest code (eq 5) or sampled ∝ exp(−d/τ) (eq 12; search.py)
    straight-through + loss  z_q with ∂z_q/∂z_e = I (eq 7) or λR (rotation trick), α·L_cmt (eqs 8–10), ν·g (eq 21)
    update state             EMA codebook (eq 11), EMA affine (A.12), LRU clocks
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .affine import EMAAffine, LearnableAffine, apply_affine, build_affine, invert_affine
from .distributed import all_gather_rows, all_reduce_sum, broadcast, is_distributed
from .kmeans import kmeans
from .options import QuantizerOptions, _require
from .replacement import OptimizerStateResetter, sample_replacements, update_idle_steps
from .search import nearest_code
from .straight_through import straight_through


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


def check_features(z: torch.Tensor, dim: int, channel_first: bool, owner: str) -> None:
    """Raise, naming `owner` and the fix, unless z is a floating tensor with `dim` features on its feature axis."""
    _require(isinstance(z, torch.Tensor), f"{owner} input must be a torch.Tensor, got {type(z).__name__}", TypeError)
    _require(z.is_floating_point(),
             f"{owner} input must be a floating-point tensor, got {z.dtype}: cast it with .float()", TypeError)
    axis = 1 if channel_first else -1
    _require(z.dim() >= (2 if channel_first else 1),
             f"{owner} input with channel_first={channel_first} needs at least {2 if channel_first else 1} dims, "
             f"got shape {tuple(z.shape)}")
    hint = ("; for (B, D, H, W) inputs pass channel_first=True"
            if not channel_first and z.dim() > 2 and z.shape[1] == dim else "")
    _require(z.shape[axis] == dim,
             f"{owner} input has feature width {z.shape[axis]} on axis {axis} (shape {tuple(z.shape)}), "
             f"but dim={dim}{hint}")


def unflatten_features(z_q: torch.Tensor, index_shape: tuple[int, ...], dtype: torch.dtype, channel_first: bool):
    """(N, D) rows → the input's layout: (*index_shape, D), or (B, D, *S) with channel_first, in `dtype`."""
    z_q = z_q.view(*index_shape, z_q.shape[-1]).to(dtype)
    if channel_first:
        # contiguous in the input's (B, D, *S) layout: a channels-last view makes conv kernels differ.
        z_q = z_q.movedim(-1, 1).contiguous()
    return z_q


def check_indices(indices: torch.Tensor, codebook_size: int) -> None:
    """Raise unless `indices` is an integer tensor with values in [0, codebook_size)."""
    _require(not indices.is_floating_point() and not indices.is_complex(),
             f"indices must be an integer tensor, got {indices.dtype}", TypeError)
    if indices.numel():
        low, high = int(indices.min()), int(indices.max())
        _require(low >= 0 and high < codebook_size,
                 f"indices must lie in [0, {codebook_size}), got range [{low}, {high}]")


class VectorQuantizer(nn.Module):
    """Vector quantization layer with the techniques of *Straightening Out the Straight-Through Estimator*.

    Args:
        dim: feature width D of the vectors to quantize.
        codebook_size: number of codes K.
        channel_first: input is (B, D, *spatial) instead of (..., D). Default False.
        distance: "euclidean" (default) or "cosine" (inputs and codes l2-normalised: the paper's "+ l2").
        beta: β ∈ [0, 1] of eqs 8–9, the codebook's share of the commitment loss. Default 0.95.
        commitment_weight: α of eq 10, on the paper's commitment: the mean-squared error over all
            elements (A.1), as vqtorch, diffusers and vector-quantize-pytorch compute it. Default 5.0,
            the paper's α. (hf_vq 0.1 used ½‖·‖² summed over D: its α is this one × 2/D; configs saved
            by 0.1 are converted on load.)
        codebook_update: "gradient" (default) or "ema": the β = 1 / EMA rule c ← (1−γ)c + γ·mean(z_e)
            (eq 11, A.2) with γ = 1 − ema_decay; the codebook then takes no gradient.
        ema_decay: 1 − γ for codebook_update="ema". Default 0.99.
        affine: None (default), "learnable" (A.1) or "ema" (A.12): shared affine re-parameterisation
            c = c_mean + c_std ⊙ c_signal (eq 15).
        affine_covariance: "diagonal" (default, the paper's c_std ⊙) or "full": c = c_mean + W·c_signal
            with a D×D matrix W, so the code cloud can follow a correlated or low-rank embedding.
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
        chunk_size: vectors per search chunk; None picks ~4 MiB distance blocks (A.1).
        half_precision_search: on CUDA compute distances in bf16/fp16 and gather from fp32 (A.1).
        check_finite: raise on NaN/Inf input in training (one reduction and host sync per call).
        step_on_forward: each training forward is one LRU step. Set False under gradient accumulation
            and call `end_step()` once per optimizer step (`hf_vq.quantization.end_step(model)`).
        rotation_trick: the gradient reaches z_e through sg[λR]·z_e, R the rotation taking z_e's direction
            to z_q's and λ = ‖z_q‖/‖z_e‖ (Fifty et al., ICLR 2025; rotation.py), instead of the identity
            (eq 7). The forward value, the commitment loss and the codebook's gradient (ν·g included) are
            unchanged. Composes with every other option. Default False.
        codebook_parametrization: "direct" (default: c_signal is learned) or "simvq" (Zhu et al. 2024):
            c_signal is a frozen random basis and the codes are c = W·c_signal + b with one learnable D×D
            map, i.e. the full learnable affine (sets affine="learnable", affine_covariance="full"; "ema" raises)
            over a basis that takes no gradient. `fold_affine()` bakes W into plain codes for inference.

    Shapes: input (..., D) or (B, D, *spatial) with channel_first; any floating dtype (computation in
    fp32, or fp64 for fp64 input; autocast is disabled inside). Output `QuantizerOutput`.
    """

    def __init__(self, dim: int, codebook_size: int, **options):
        super().__init__()
        unknown = sorted(set(options) - set(QuantizerOptions.names()))
        _require(not unknown,
                 f"Unknown VectorQuantizer option(s) {unknown}; valid: {', '.join(QuantizerOptions.names()[2:])}",
                 TypeError)
        self.options = QuantizerOptions(dim, codebook_size, **options)
        for name, value in dataclasses.asdict(self.options).items():
            if name != "affine":  # `self.affine` is the affine module; its kind is `self.options.affine`
                setattr(self, name, value)

        # c_signal of eq 15 (the plain codebook when there is no affine).
        signal = torch.empty(codebook_size, dim)
        if self.codebook_parametrization == "simvq":
            # SimVQ's frozen basis is a buffer (same state_dict key): a loader that re-creates parameters
            # (transformers' from_pretrained does) cannot make it trainable, and DDP sees no unused parameter.
            self.register_buffer("codebook_signal", signal)
        else:
            self.codebook_signal = nn.Parameter(signal, requires_grad=self._signal_is_learned())
        self.affine = build_affine(self.options.affine, dim, self.affine_groups, self.affine_covariance,
                                   self.affine_lr_scale, self.affine_momentum)
        # Running state; all persistent so a checkpoint resumes the same LRU clock and init status.
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("num_steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("code_usage", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("_step_hits", torch.zeros(codebook_size, dtype=torch.long), persistent=False)
        self.register_buffer("last_replaced", torch.zeros(0, dtype=torch.long), persistent=False)
        self._optimizer_state = OptimizerStateResetter()
        self.alternating = None  # the AlternatingOptimizer that owns the codebook, when attached
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
                f"commitment_weight={self.commitment_weight}, affine={self.options.affine!r}, sync_nu={self.sync_nu}, "
                f"replace_after={self.replace_after}, codebook_update={self.codebook_update!r}"
                + (", rotation_trick=True" if self.rotation_trick else "")
                + (f", codebook_parametrization={self.codebook_parametrization!r}"
                   if self.codebook_parametrization != "direct" else ""))

    @property
    def affine_mode(self) -> str | None:
        """Deprecated alias of `options.affine` (removed in 0.3)."""
        warnings.warn("VectorQuantizer.affine_mode is deprecated; use .options.affine", FutureWarning, stacklevel=2)
        return self.options.affine

    def _signal_is_learned(self) -> bool:
        """c_signal takes gradients: not with the EMA rule (eq 11), and not as SimVQ's frozen basis."""
        return self.codebook_update == "gradient" and self.codebook_parametrization == "direct"

    def codebook_parameters(self) -> list[nn.Parameter]:
        """Parameters of the codebook (c_signal and learnable affine): give them their own optimizer
        group without weight decay (A.1), or to an `AlternatingOptimizer`."""
        params = [self.codebook_signal] if self._signal_is_learned() else []
        if isinstance(self.affine, LearnableAffine):
            params += [self.affine.scale, self.affine.bias]
        return params

    def _raw_codebook(self) -> torch.Tensor:
        """Codes with the affine applied (eq 15), before any l2 normalisation; differentiable."""
        if self.affine is None:
            return self.codebook_signal
        return apply_affine(self.codebook_signal, *self.affine.params())

    def effective_codebook(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(K, D) code vectors the input is compared with: c = c_mean + c_std ⊙ c_signal (eq 15),
        l2-normalised in cosine mode; differentiable w.r.t. `codebook_parameters()`."""
        codebook = self._raw_codebook()
        if dtype is not None:
            codebook = codebook.to(dtype)
        return F.normalize(codebook, dim=-1) if self.distance == "cosine" else codebook

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) effective code vectors that `quantized` is made of: affine applied, l2-normalised in
        cosine mode. Detached."""
        return self.effective_codebook().detach()

    def assign(self, z: torch.Tensor, codebook: torch.Tensor, stochastic: bool) -> torch.Tensor:
        """(N,) int64 code of each (N, D) vector: the nearest (eq 5), or, when `stochastic` and a
        temperature is set, sampled ∝ exp(−d/τ) (eq 12)."""
        return nearest_code(
            z, codebook, chunk_size=self.chunk_size, half_precision=self.half_precision_search,
            temperature=self.stochastic_temperature if stochastic else None,
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for int `indices`: (...) → (..., D), or (B, *S) → (B, D, *S) with channel_first."""
        check_indices(indices, self.codebook_size)
        out = F.embedding(indices.long(), self.effective_codebook())
        if self.channel_first:
            out = out.movedim(-1, 1).contiguous()  # same layout as forward's output (conv kernels differ otherwise)
        return out

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The quantizer contract's name of `lookup`: the vectors `quantized` holds for these indices."""
        return self.lookup(indices)

    indices_to_codes = get_codes  # vector-quantize-pytorch's name

    @torch.no_grad()
    def fold_affine(self) -> VectorQuantizer:
        """Bake the affine (or SimVQ's W) into plain codes (c_signal ← c_mean + W·c_signal) and drop it, so
        inference needs no affine: the layer becomes `VectorQuantizer(dim, K, **self.options)` with these
        codes (codebook_parametrization="direct"). Outputs are unchanged. Returns self."""
        if self.affine is not None:
            codes = self._raw_codebook()
            self.affine = None
            self.options = dataclasses.replace(self.options, affine=None, codebook_parametrization="direct")
            if self.codebook_parametrization == "simvq":  # the frozen basis buffer becomes the plain codebook
                del self._buffers["codebook_signal"]
                self.codebook_parametrization = "direct"
                self.codebook_signal = nn.Parameter(codes, requires_grad=self._signal_is_learned())
            else:
                self.codebook_signal.copy_(codes)
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

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        flat, index_shape = self._prepare_input(z)
        if self._bypass:
            zero = flat.new_zeros((), dtype=torch.float32)
            indices = torch.zeros(index_shape, dtype=torch.long, device=z.device)
            return QuantizerOutput(z, indices, zero, zero, zero, zero)
        training = self.training
        with torch.autocast(device_type=flat.device.type, enabled=False):
            if training:
                self._prepare_codebook(flat.detach())                           # k-means (A.7), LRU (§3)
            z_e = F.normalize(flat, dim=-1) if self.distance == "cosine" else flat  # "+ l2": eq 5 on the sphere
            inner = training and self.alternating is not None and torch.is_grad_enabled()
            indices = self.alternating.run(self, z_e.detach()) if inner else None  # inner steps (eq 17)
            codebook = self.effective_codebook(z_e.dtype)                        # eq 15
            if indices is None:
                indices = self.assign(z_e, codebook, stochastic=training)       # eq 5 / eq 12
            z_q, loss, commitment = self._straight_through(z_e, codebook, indices, inner)  # eqs 7–10, 21
            counts = torch.bincount(indices, minlength=self.codebook_size)
            if training:
                self._update_state(z_e.detach(), indices, counts)               # eq 11, A.12, LRU clocks
        perplexity, active_codes = histogram_perplexity(counts)
        quantized = unflatten_features(z_q, index_shape, z.dtype, self.channel_first)
        return QuantizerOutput(quantized, indices.view(index_shape), loss.float(), commitment.float(), perplexity,
                               active_codes)

    def _straight_through(self, z: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor, inner: bool):
        """z_q = c[k] with ∂z_q/∂z_e = I (eq 7) or λR (rotation trick), loss = α·L_cmt (eqs 8–10), codebook
        gradient ν·g (eq 21).

        The codebook's β half comes from this loss in joint training, from the inner steps under
        alternation (whose ν·g is deferred to them), and from eq 11 with codebook_update="ema"."""
        if self.codebook_update == "ema":
            codebook = codebook.detach().clone()  # updated in place by eq 11 below; the graph keeps this copy
        sink = self.alternating.sync_sink(self) if inner and self.sync_nu else None
        return straight_through(z, codebook, indices, sync_nu=self.sync_nu, commitment_weight=self.commitment_weight,
                                beta=self.beta, codebook_term=self.codebook_update == "gradient" and not inner,
                                sync_sink=sink, rotation_trick=self.rotation_trick)

    # ------------------------------------------------------------------ input handling
    def _prepare_input(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Checked (N, D) view/copy of z in compute dtype, and the shape of the index tensor."""
        check_features(z, self.dim, self.channel_first, type(self).__name__)
        if self.channel_first:
            z = z.movedim(1, -1)
        double = z.dtype == torch.float64 or self.codebook_signal.dtype == torch.float64
        compute = torch.float64 if double else torch.float32
        flat = z.reshape(-1, self.dim).to(compute)
        # A finite sum proves every element finite (one reduction); the exact check only runs when it
        # is not (a NaN/Inf, or finite values whose sum overflows).
        if self.training and not self._bypass and self.check_finite and not bool(torch.isfinite(flat.sum())):
            _require(bool(torch.isfinite(flat).all()),
                     "VectorQuantizer received NaN or Inf in its input during training; fix the upstream "
                     "activations (or pass check_finite=False to skip this check)")
        return flat, tuple(z.shape[:-1])

    # ------------------------------------------------------------------ training-time state
    # ------------------------------------------------------------------ training-time state
    @torch.no_grad()
    def _prepare_codebook(self, z: torch.Tensor) -> None:
        """Before the search: k-means on the first training batch (A.7), then LRU replacement (§3)."""
        if self.kmeans_init and not bool(self.initialized):
            self._init_codebook_from(F.normalize(z, dim=-1) if self.distance == "cosine" else z)
        if self.replace_after > 0:
            self._replace_dead_codes(z)

    @torch.no_grad()
    def _update_state(self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """After the search: this step's code hits, the EMA affine (A.12), the EMA codebook (eq 11), and
        the LRU clock when every forward is a step."""
        self._step_hits.add_(counts)
        if isinstance(self.affine, EMAAffine):
            self.affine.update(z, indices // (self.codebook_size // self.affine_groups), self.codebook_signal)
        if self.codebook_update == "ema":
            self._ema_codebook_update(z, indices)
        if self.step_on_forward:
            self.end_step()

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
        if self.affine is not None:
            vectors = invert_affine(vectors, index, *self.affine.params(), self.codebook_size // self.affine_groups)
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
        self.codebook_signal[hit] = torch.lerp(self.codebook_signal[hit], means.to(self.codebook_signal.dtype),
                                               1.0 - self.ema_decay)
