"""PyTorch VQ-VAE built from diffusers' VQModel blocks, with the paper's `VectorQuantizer` (A.1, Table 8).

encoder → quant_conv → pre_quant_norm → quantizer → post_quant_conv → decoder, with diffusers' `Encoder`/`Decoder`
and the same module names as `diffusers.VQModel` (diffusers is imported when a model is built), so `to_diffusers()`
is a state-dict copy plus the effective codebook (affine folded in, l2-normalised codes in cosine mode); it needs
`pre_quant_norm="none"`, as VQModel has no layer between quant_conv and its quantizer. A transformers
`PreTrainedModel`: AutoModel, save_pretrained/from_pretrained (safetensors) and the Hub workflow work as for the ViT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import ModelOutput

from ...quantization.layer import VectorQuantizer
from ...quantization.registry import build_quantizer
from ..inputs import check_pixel_values
from ..loading import QuantizerCheckpointMixin, init_quantizer_weights, quantizer_dtype
from ..normalization import build_pre_quant_norm
from ..outputs import DeprecatedCodebookUsage
from ..remote_code import RemoteCodeModelMixin
from .configuration_vq_vae import VQVAEConfig


@dataclass
class VQVAEEncoderOutput(ModelOutput):
    """
    Output of [`VQVAEModel.encode`].

    Args:
        latents (`torch.FloatTensor` of shape `(batch_size, latent_channels, height / f, width / f)`):
            Pre-quantization latents z_e, the quantizer's input (after `quant_conv` and `pre_quant_norm`);
            f = `config.downsampling_factor`.
        quantized (`torch.FloatTensor`, same shape as `latents`):
            Their codes z_q.
        codebook_indices (`torch.LongTensor` of shape `(batch_size, height / f, width / f)`):
            Code index of each latent position; with a trailing axis of the levels used (`quantizer.type`
            "residual") or of the groups ("group").
    """

    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    codebook_indices: torch.LongTensor | None = None


@dataclass
class VQVAEOutput(DeprecatedCodebookUsage, ModelOutput):
    """
    Output of [`VQVAEModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            `reconstruction_loss` + `quantizer_loss`.
        reconstruction (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Decoded images.
        reconstruction_loss (`torch.FloatTensor` of shape `()`):
            Mean squared error between `reconstruction` and the input.
        quantizer_loss (`torch.FloatTensor` of shape `()`):
            α·L_cmt (eq 10).
        commitment_loss (`torch.FloatTensor` of shape `()`):
            L_cmt: mean over latent positions of ½‖z_e − z_q‖² (eqs 8–9); no gradient.
        codebook_indices (`torch.LongTensor` of shape `(batch_size, height / f, width / f)`):
            Code index of each latent position; with a trailing axis of the levels used (`quantizer.type`
            "residual") or of the groups ("group").
        perplexity (`torch.FloatTensor` of shape `()`):
            2^H of the batch's code histogram (§5.1); residual/group: the mean over the codebooks.
        active_codes (`torch.FloatTensor` of shape `()`):
            Fraction of the K codes selected at least once in the batch. Also readable as `codebook_usage`, a
            deprecated alias (FutureWarning) for one release.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_indices: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None
    active_codes: torch.FloatTensor | None = None


class VQVAEPreTrainedModel(QuantizerCheckpointMixin, RemoteCodeModelMixin, PreTrainedModel):
    config: VQVAEConfig
    config_class = VQVAEConfig
    base_model_prefix = "vq_vae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _quantizer_dim_field = "latent_channels"
    # from_pretrained(dtype=fp16/bf16) keeps the quantizer in fp32: codes are gathered at full precision (A.1).
    _keep_in_fp32_modules_strict = ["quantizer"]
    # The loss is a batch mean (MSE + α·L_cmt): Trainer must divide it over gradient-accumulation steps.
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        if isinstance(module, VectorQuantizer):
            init_quantizer_weights(module)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            # PyTorch's default (what diffusers' VQModel gets), through transformers' guarded init functions
            # so tensors loaded by from_pretrained are left alone.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        else:
            super()._init_weights(module)


# Quantizer types whose indices have a trailing axis of levels or groups. (Types, not classes: loaded as remote
# code, the config and the model each import their own copy of the quantizer modules.)
MULTI_CODEBOOK_TYPES = ("residual", "group")
# Codes of the largest product codebook `to_diffusers()` writes for a grouped quantizer (K^G rows of D floats).
MAX_PRODUCT_CODES = 65536


def diffusers_codebook(quantizer: nn.Module, kind: str) -> torch.Tensor:
    """(K', D) codebook of one diffusers `VectorQuantizer` that picks the same z_q as `quantizer` (of
    `quantizer.type` `kind`), or ValueError.

    A grouped quantizer's nearest code is the concatenation of each group's nearest code, since the squared
    distance (and, for unit codes per group, the cosine) is a sum over the groups: its product codebook of K^G
    codes, in row-major order of the group indices, is expressible up to `MAX_PRODUCT_CODES`. A residual
    quantizer's levels search successive residuals, which one nearest-code search cannot do (unless Q = 1).
    """
    if kind == "residual":
        if quantizer.num_levels > 1:
            raise ValueError(
                f"to_diffusers() cannot export quantizer.type='residual' with num_levels={quantizer.num_levels}: "
                "diffusers' VQModel has one VectorQuantizer, a single nearest-code search, while residual VQ searches "
                "each level on what the previous left. Keep this model in transformers format (save_pretrained / "
                "from_pretrained, trust_remote_code=True), or train with quantizer.num_levels=1 to export."
            )
        return quantizer.levels[0].codebook
    if kind in ("fsq", "lfq"):
        raise ValueError(
            f"to_diffusers() cannot export quantizer.type={kind!r}: it rounds a projection of the latents to a grid "
            "instead of picking the nearest of its codes, which is the only search diffusers' VQModel has. Keep this "
            "model in transformers format (save_pretrained / from_pretrained, trust_remote_code=True)."
        )
    if kind == "group":
        size = quantizer.codebook_size ** quantizer.num_groups
        if size > MAX_PRODUCT_CODES:
            raise ValueError(
                f"to_diffusers() exports quantizer.type='group' as its product codebook of codebook_size**num_groups "
                f"= {quantizer.codebook_size}**{quantizer.num_groups} = {size} codes, over the limit of "
                f"{MAX_PRODUCT_CODES}: diffusers' VQModel has one VectorQuantizer over all latent channels. Use fewer "
                "groups or a smaller quantizer.codebook_size to export, or keep this model in transformers format."
            )
        grids = torch.meshgrid(*[torch.arange(quantizer.codebook_size)] * quantizer.num_groups, indexing="ij")
        indices = torch.stack([g.reshape(-1) for g in grids], dim=-1).to(quantizer.groups[0].codebook.device)
        return torch.cat([group.codebook[indices[:, g]] for g, group in enumerate(quantizer.groups)], dim=-1)
    return quantizer.codebook


class VQVAEModel(VQVAEPreTrainedModel):
    """Vector-quantized auto-encoder: `encode` → latents and codes, `decode` ← latents or codes, `forward`
    → reconstruction and the training loss MSE + α·L_cmt."""

    def __init__(self, config: VQVAEConfig):
        # Imported here, not at the top: diffusers adds seconds to `import hf_vq` for users who never build a VAE.
        from diffusers.models.autoencoders.vae import Decoder, Encoder

        config._check_pre_quant_norm()  # again: a field may have been set after the config was built
        super().__init__(config)
        blocks = len(config.block_out_channels)
        width = tuple(config.block_out_channels)
        self.encoder = Encoder(
            in_channels=config.num_channels,
            out_channels=config.latent_channels,
            down_block_types=("DownEncoderBlock2D",) * blocks,
            block_out_channels=width,
            layers_per_block=config.layers_per_block,
            act_fn=config.act_fn,
            norm_num_groups=config.norm_num_groups,
            double_z=False,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        self.quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        # eps 1e-6 as diffusers' GroupNorms in the encoder and decoder
        self.pre_quant_norm = build_pre_quant_norm(
            config.pre_quant_norm, config.latent_channels, channel_first=True, eps=1e-6,
            num_groups=config.norm_num_groups,
        )
        # Built from this module's own imports, not by `config.quantizer.build`: loaded as remote code the config
        # has its own copy of the quantizer modules, whose classes `_init_weights` would not recognise.
        with quantizer_dtype():
            self.quantizer = build_quantizer(config.quantizer["type"], config.latent_channels, True,
                                             **config.quantizer.options)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)
        self.decoder = Decoder(
            in_channels=config.latent_channels,
            out_channels=config.num_channels,
            up_block_types=("UpDecoderBlock2D",) * blocks,
            block_out_channels=width,
            layers_per_block=config.layers_per_block,
            act_fn=config.act_fn,
            norm_num_groups=config.norm_num_groups,
            norm_type="group",
            mid_block_add_attention=config.mid_block_add_attention,
        )
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor | None) -> None:
        height, width = check_pixel_values(pixel_values, self.config.num_channels, "VQ-VAE")
        factor = self.config.downsampling_factor
        if height % factor or width % factor:
            raise ValueError(
                f"pixel_values is {height}×{width}, but image sides must be multiples of {factor} (the downsampling "
                f"factor of block_out_channels={self.config.block_out_channels}; "
                f"config.image_size={self.config.image_size})"
            )
        # torch's GroupNorm refuses a group of one value (batch 1 × channels/groups × grid); the lowest
        # resolution sees the last two entries of block_out_channels, and the latent channels with a pre-quant
        # GroupNorm
        widths = self.config.block_out_channels[-2:]
        if self.config.pre_quant_norm == "groupnorm":
            widths = [*widths, self.config.latent_channels]
        narrowest = min(widths) // self.config.norm_num_groups
        if pixel_values.shape[0] * narrowest * (height // factor) * (width // factor) == 1:
            raise ValueError(
                f"pixel_values is one {height}×{width} image: at the 1×1 latent grid each GroupNorm group holds a "
                f"single value (block_out_channels={self.config.block_out_channels}, norm_num_groups="
                f"{self.config.norm_num_groups}"
                + (f", latent_channels={self.config.latent_channels} with pre_quant_norm='groupnorm'"
                   if self.config.pre_quant_norm == "groupnorm" else "")
                + "); use larger images or a larger batch"
            )

    def _latents(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """z_e, the quantizer's input: encoder → quant_conv → pre_quant_norm."""
        self._check_pixel_values(pixel_values)
        return self.pre_quant_norm(self.quant_conv(self.encoder(pixel_values.to(self.quant_conv.weight.dtype))))

    def _decode_codes(self, quantized: torch.Tensor) -> torch.Tensor:
        """post_quant_conv → decoder, on z_q in row-major strides. With a size-1 dimension (one latent channel,
        a latent row) tensors of other strides also count as contiguous, and CPU convolutions then take other
        kernels (5e-16 apart in fp64): `forward` and `decode` must hand the decoder one layout to agree bit for bit."""
        if quantized.stride() != torch.empty(quantized.shape, device="meta").stride():
            quantized = quantized.clone(memory_format=torch.contiguous_format)
        return self.decoder(self.post_quant_conv(quantized))

    def encode(self, pixel_values: torch.Tensor) -> VQVAEEncoderOutput:
        """Images (B, C, H, W) → latents z_e (B, D, H/f, W/f), their codes z_q and code indices (B, H/f, W/f).

        Runs the quantizer, so in training mode this is a training step for its state (LRU, EMA); call it in
        eval mode to only read codes.
        """
        latents = self._latents(pixel_values)
        vq = self.quantizer(latents)
        return VQVAEEncoderOutput(latents=latents, quantized=vq.quantized, codebook_indices=vq.indices)

    def decode(self, latents_or_indices: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from latents z_e (B, D, h, w) as `encode` returns them (already through
        `pre_quant_norm`, which is not applied again), which are quantized first, or from integer code indices
        (B, h, w); (B, h, w, n) for a residual quantizer (its first n levels: a lower bitrate for n < num_levels),
        (B, h, w, G) for a grouped one."""
        if latents_or_indices.is_floating_point():
            if latents_or_indices.dim() != 4 or latents_or_indices.shape[1] != self.config.latent_channels:
                raise ValueError(
                    f"latents must be (batch_size, latent_channels={self.config.latent_channels}, height, width), got "
                    f"shape {tuple(latents_or_indices.shape)}"
                )
            quantized = self.quantizer(latents_or_indices).quantized
        else:
            levels = self.config.quantizer["type"] in MULTI_CODEBOOK_TYPES
            if latents_or_indices.dim() != 3 + levels:
                expected = "(batch_size, height, width" + (", levels or groups)" if levels else ")")
                raise ValueError(f"code indices must be {expected}, got shape {tuple(latents_or_indices.shape)}")
            # lookup returns a channels-last view (made row-major by _decode_codes: other CPU convolution kernels
            # drift by ≈1e-5) in the quantizer's dtype, which stays fp32 in a half-precision model.
            quantized = self.quantizer.lookup(latents_or_indices).to(self.post_quant_conv.weight.dtype)
        return self._decode_codes(quantized)

    def forward(self, pixel_values: torch.Tensor | None = None, return_dict: bool | None = None) -> VQVAEOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images, in the range the model is trained on (e.g. [-1, 1]); also the reconstruction target.
        return_dict (`bool`, *optional*):
            Return a [`VQVAEOutput`] (default) instead of a tuple.
        """
        vq = self.quantizer(self._latents(pixel_values))
        reconstruction = self._decode_codes(vq.quantized)
        reconstruction_loss = F.mse_loss(reconstruction.float(), pixel_values.float())  # fp32 even in a half model
        output = VQVAEOutput(
            loss=reconstruction_loss + vq.loss,
            reconstruction=reconstruction,
            reconstruction_loss=reconstruction_loss,
            quantizer_loss=vq.loss,
            commitment_loss=vq.commitment,
            codebook_indices=vq.indices,
            perplexity=vq.perplexity,
            active_codes=vq.active_codes,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def to_diffusers(self):
        """A `diffusers.VQModel` with these weights whose `decode(latents)` matches ours.

        Its codebook is our effective one (`quantizer.codebook`: affine folded in, l2-normalised in cosine
        mode, where its Euclidean search over unit codes ranks codes as our cosine search does). Training
        behaviour (β, ν, affine, LRU) does not carry over: diffusers' quantizer is a plain legacy VQ. A grouped
        quantizer exports as its product codebook (see `diffusers_codebook`), so `decode(latents)` still matches;
        diffusers' `encode`/`forward` give its product indices. Raises `ValueError` for what VQModel cannot
        express: a `pre_quant_norm`, a residual quantizer of several levels, a product codebook too large.
        """
        config = self.config
        codebook = diffusers_codebook(self.quantizer, config.quantizer["type"])
        if config.pre_quant_norm != "none":
            # VQModel.encode ends at quant_conv and decode quantizes its input as is: a normalization between
            # them has no place, and it cannot be folded into quant_conv (it is not linear in the latents).
            raise ValueError(
                f"to_diffusers() cannot export a model with pre_quant_norm={config.pre_quant_norm!r}: diffusers' "
                "VQModel has no normalization between quant_conv and its quantizer, so its encode() and forward() "
                "would pick other codes than this model. Train with pre_quant_norm='none' to export to diffusers, or "
                "keep this model in transformers format (save_pretrained / from_pretrained, trust_remote_code=True)."
            )
        from diffusers import VQModel

        blocks = len(config.block_out_channels)
        model = VQModel(
            in_channels=config.num_channels,
            out_channels=config.num_channels,
            down_block_types=("DownEncoderBlock2D",) * blocks,
            up_block_types=("UpDecoderBlock2D",) * blocks,
            block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block,
            act_fn=config.act_fn,
            latent_channels=config.latent_channels,
            sample_size=config.image_size,
            num_vq_embeddings=codebook.shape[0],
            norm_num_groups=config.norm_num_groups,
            vq_embed_dim=config.latent_channels,
            scaling_factor=1.0,  # no latent normalisation was fitted; diffusers' 0.18215 belongs to SD's VAE
            mid_block_add_attention=config.mid_block_add_attention,
        )
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("quantizer.")}
        state["quantize.embedding.weight"] = codebook
        model.load_state_dict(state, strict=True)
        model = model.to(self.device)
        if model.dtype != self.dtype:  # diffusers warns on any dtype cast, so only cast when needed
            model = model.to(dtype=self.dtype)
        return model.train(self.training)


__all__ = ["VQVAEEncoderOutput", "VQVAEModel", "VQVAEOutput", "VQVAEPreTrainedModel"]
