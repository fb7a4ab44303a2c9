"""VQ-VAE model configuration."""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import PreTrainedConfig

from ..normalization import PRE_QUANT_NORMS, check_pre_quant_norm
from ..quantizer_config import QuantizerSettingsMixin
from ..remote_code import RemoteCodeConfigMixin
from ..versioning import VersionedConfigMixin

# Table 8 lists no VQ settings for the generative models; A.1's global ones (1024 codes, α 5, β in
# 0.9–0.995) completed with Table 6's ν and learnable affine, the paper's full recipe.
PAPER_VAE_QUANTIZER = {
    "codebook_size": 1024,
    "commitment_weight": 5.0,
    "beta": 0.995,
    "sync_nu": 0.01,
    "affine": "learnable",
    "affine_lr_scale": 10.0,
}


class VQVAEConfig(VersionedConfigMixin, QuantizerSettingsMixin, RemoteCodeConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a [`VQVAEModel`]: diffusers' VQ-GAN style `Encoder` → 1×1 conv → `VectorQuantizer` →
    1×1 conv → `Decoder`, the layout of `diffusers.VQModel`, trained with MSE + α·L_cmt (A.1, Table 8).

    The defaults fit 32×32 RGB (CIFAR10 in the paper): base width 64 (A.1: "64 channels"), doubled after
    the first downsampling as in VQGAN's channel multipliers (1, 2, 2); three blocks give two
    downsamplings, so 8×8 latents of 64 channels, one code per latent position. For 128×128 (CelebA in
    the paper) set `image_size=128` (32×32 latents), and add blocks to `block_out_channels` to downsample
    further (each extra block halves the latent grid).

    Args:
        image_size (`int`, *optional*, defaults to 32):
            Training resolution (exported as diffusers' `sample_size`). The model is convolutional: any input
            whose sides are multiples of 2^(len(block_out_channels) − 1) is accepted.
        num_channels (`int`, *optional*, defaults to 3):
            Image channels, in and out.
        block_out_channels (`list[int]`, *optional*, defaults to `[64, 128, 128]`):
            Width of each encoder block (reversed in the decoder); each block but the last downsamples by 2.
        layers_per_block (`int`, *optional*, defaults to 2):
            ResNet layers per encoder block (the decoder uses one more, as in diffusers).
        latent_channels (`int`, *optional*, defaults to 64):
            Channels of the latent grid, which is also the codebook dimension.
        norm_num_groups (`int`, *optional*, defaults to 32):
            GroupNorm groups; must divide every entry of `block_out_channels`.
        act_fn (`str`, *optional*, defaults to `"silu"`):
            Activation of the ResNet blocks.
        mid_block_add_attention (`bool`, *optional*, defaults to `True`):
            Self-attention in the middle blocks, as in `diffusers.VQModel`.
        pre_quant_norm (`str`, *optional*, defaults to `"none"`):
            Normalization of the latents between `quant_conv` and the quantizer (A.1), without learnable affine:
            `"layernorm"` normalises the `latent_channels` values at each latent position; `"groupnorm"`
            normalises each of `norm_num_groups` groups of latent channels over the whole latent grid of a
            sample, as diffusers' GroupNorms (`latent_channels` must be a multiple of `norm_num_groups`).
            `to_diffusers()` needs `"none"`: `diffusers.VQModel` has no layer there.
        quantizer (`dict` or [`QuantizerConfig`], *optional*):
            The quantizer: `type` ("vq", the default: one `VectorQuantizer`; "residual": `ResidualVectorQuantizer`;
            "group": `GroupedVectorQuantizer`) and its options (all but `dim` and `channel_first`; a residual or
            grouped quantizer takes every `VectorQuantizer` option for its levels/groups, plus its own, e.g.
            `num_levels`, `quantizer_dropout`, `num_groups`); unset options take the paper's values (1024 codes,
            α 5, β 0.995, ν 0.01, learnable affine with lr scale 10), then the type's defaults.
    """

    model_type = "hf_vq_vae"
    quantizer_defaults: ClassVar[dict[str, Any]] = PAPER_VAE_QUANTIZER
    quantizer_dim_field: ClassVar[str] = "latent_channels"
    quantizer_channel_first: ClassVar[bool] = True
    remote_code_auto_map: ClassVar[dict[str, str]] = {
        "AutoConfig": "configuration_vq_vae.VQVAEConfig",
        "AutoModel": "modeling_vq_vae.VQVAEModel",
        "AutoImageProcessor": "image_processing_vq.VQImageProcessor",
    }
    keys_to_ignore_at_inference: ClassVar[list[str]] = [
        "quantizer_loss", "commitment_loss", "codebook_indices", "perplexity", "active_codes",
    ]

    image_size: int = 32
    num_channels: int = 3
    block_out_channels: list[int] | tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 2
    latent_channels: int = 64
    norm_num_groups: int = 32
    act_fn: str = "silu"
    mid_block_add_attention: bool = True
    pre_quant_norm: str = "none"
    quantizer: dict | None = None

    def __post_init__(self, **kwargs: Any):
        kwargs.pop("model_type", None)
        self.block_out_channels = [int(c) for c in self.block_out_channels]
        if not self.block_out_channels or any(c <= 0 or c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"block_out_channels must be a non-empty list of positive multiples of norm_num_groups="
                f"{self.norm_num_groups}, got {self.block_out_channels}"
            )
        if self.image_size % self.downsampling_factor:
            raise ValueError(
                f"image_size={self.image_size} must be a multiple of the downsampling factor "
                f"{self.downsampling_factor} "
                f"(2^(len(block_out_channels) - 1) with block_out_channels={self.block_out_channels})"
            )
        self._check_pre_quant_norm()
        self._init_quantizer_settings()
        super().__post_init__(**kwargs)

    def _check_pre_quant_norm(self) -> None:
        """Raise `ValueError` naming `pre_quant_norm` if the model cannot build it (also run by the model, since
        fields can be set after construction, e.g. by `from_pretrained(..., pre_quant_norm=...)`)."""
        check_pre_quant_norm(self.pre_quant_norm, PRE_QUANT_NORMS)
        if self.pre_quant_norm == "layernorm" and self.latent_channels < 2:
            raise ValueError(
                f"pre_quant_norm='layernorm' over latent_channels={self.latent_channels} channel maps every latent "
                "to 0; "
                "use 'groupnorm' (which normalises over the latent grid too) or 'none'"
            )
        if self.pre_quant_norm == "groupnorm" and self.latent_channels % self.norm_num_groups:
            raise ValueError(
                f"pre_quant_norm='groupnorm' splits the latent channels into norm_num_groups="
                f"{self.norm_num_groups} groups, but latent_channels={self.latent_channels} is not a multiple of "
                "it; change either, or use 'layernorm'"
            )

    @property
    def downsampling_factor(self) -> int:
        """Image side / latent side."""
        return 2 ** (len(self.block_out_channels) - 1)


__all__ = ["VQVAEConfig", "PAPER_VAE_QUANTIZER"]
