"""VQ-ViT model configuration."""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import ViTConfig

from ..normalization import check_pre_quant_norm
from ..quantizer_config import QuantizerSettingsMixin
from ..remote_code import RemoteCodeConfigMixin
from ..versioning import VersionedConfigMixin

# Table 6 (ViT-Tiny, ImageNet100) with A.1's 1024 codes; α = 5 on the element-wise MSE, as A.1 states.
PAPER_VIT_QUANTIZER = {
    "codebook_size": 1024,
    "commitment_weight": 5.0,
    "beta": 0.995,
    "sync_nu": 0.01,
    "affine": "learnable",
    "affine_lr_scale": 10.0,
}


class VQViTConfig(VersionedConfigMixin, QuantizerSettingsMixin, RemoteCodeConfigMixin, ViTConfig):
    r"""
    Configuration of a [`VQViTModel`]: a ViT whose token sequence is vector-quantized after one encoder block
    (Huh et al., ICML 2023, A.1). Accepts every [`ViTConfig`] field; the defaults are the paper's ViT-Tiny
    (Table 7: patch 16, hidden 192, 12 blocks, 3 heads, MLP 768, GELU, 224×224) with LayerNorm eps 1e-6 as
    in the torchvision/timm code the paper used.

    Args:
        quantizer_layer (`int`, *optional*):
            Quantize the output of this block (1-based; 1 ≤ quantizer_layer ≤ num_hidden_layers). Defaults to
            `max(1, num_hidden_layers // 2)`, i.e. after block 6 of 12 (A.1), and after the only block of a
            one-block ViT.
        quantize_cls_token (`bool`, *optional*, defaults to `True`):
            Quantize the [CLS] token too. With `False` only the patch tokens go through the codebook and the
            [CLS] token carries continuous information past the bottleneck.
        pre_quant_norm (`str`, *optional*, defaults to `"none"`):
            Normalization of the tokens just before the quantizer (A.1): `"layernorm"` normalises each quantized
            token over its `hidden_size` features (eps `layer_norm_eps`), without learnable affine; `"none"`
            leaves them as block `quantizer_layer` outputs them. An unquantized [CLS] token is not normalised.
        quantizer (`dict` or [`QuantizerConfig`], *optional*):
            `VectorQuantizer` options (all but `dim` and `channel_first`). Unset options take the paper's ViT
            values (1024 codes, α 5, β 0.995, ν 0.01, learnable affine with lr scale 10), then the layer's
            defaults. Unknown options raise a `ValueError`. Assigning a dict later (including
            `from_pretrained(..., quantizer={...})`) replaces all options the same way.

    Example:

    ```python
    >>> from hf_vq import VQViTConfig, VQViTForImageClassification
    >>> config = VQViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
    ...                      num_attention_heads=2, intermediate_size=64, quantizer={"codebook_size": 16})
    >>> model = VQViTForImageClassification(config)
    ```
    """

    model_type = "vq_vit"
    quantizer_defaults: ClassVar[dict[str, Any]] = PAPER_VIT_QUANTIZER
    quantizer_dim_field: ClassVar[str] = "hidden_size"
    quantizer_channel_first: ClassVar[bool] = False
    remote_code_auto_map: ClassVar[dict[str, str]] = {
        "AutoConfig": "configuration_vq_vit.VQViTConfig",
        "AutoModel": "modeling_vq_vit.VQViTModel",
        "AutoModelForImageClassification": "modeling_vq_vit.VQViTForImageClassification",
        "AutoImageProcessor": "image_processing_vq.VQImageProcessor",
    }
    # Per-batch quantizer diagnostics are not predictions: keep them out of Trainer's eval "logits".
    keys_to_ignore_at_inference: ClassVar[list[str]] = [
        "quantizer_loss", "commitment_loss", "codebook_indices", "perplexity", "active_codes",
    ]

    hidden_size: int = 192
    num_hidden_layers: int = 12
    num_attention_heads: int = 3
    intermediate_size: int = 768
    layer_norm_eps: float = 1e-6
    quantizer_layer: int | None = None
    quantize_cls_token: bool = True
    pre_quant_norm: str = "none"
    quantizer: dict | None = None

    def __post_init__(self, **kwargs: Any):
        # A ViTConfig dict passed in carries model_type="vit"; kept, it would make this config save as a ViT.
        kwargs.pop("model_type", None)
        if self.quantizer_layer is None:
            # max(1, ·): a one-block ViT would otherwise default to 0 and fail on a field the user never set.
            self.quantizer_layer = max(1, self.num_hidden_layers // 2)
        if isinstance(self.quantizer_layer, bool) or not isinstance(self.quantizer_layer, int) or not (
            1 <= self.quantizer_layer <= self.num_hidden_layers
        ):
            raise ValueError(
                f"quantizer_layer must be an int in [1, num_hidden_layers={self.num_hidden_layers}] (the block after "
                f"which tokens are quantized), got {self.quantizer_layer!r}"
            )
        self._check_pre_quant_norm()
        self._init_quantizer_settings()
        super().__post_init__(**kwargs)

    def _check_pre_quant_norm(self) -> None:
        """Raise `ValueError` naming `pre_quant_norm` if the model cannot build it (also run by the model, since
        fields can be set after construction, e.g. by `from_pretrained(..., pre_quant_norm=...)`)."""
        check_pre_quant_norm(
            self.pre_quant_norm, ("none", "layernorm"),
            hint="tokens (batch_size, sequence_length, hidden_size) are normalised one by one with 'layernorm'; "
            "'groupnorm' is for the VQ-VAE's channel-first latents" if self.pre_quant_norm == "groupnorm" else "",
        )
        if self.pre_quant_norm == "layernorm" and self.hidden_size < 2:
            raise ValueError(
                f"pre_quant_norm='layernorm' over hidden_size={self.hidden_size} feature maps every token to 0; "
                "use 'none'"
            )


__all__ = ["VQViTConfig", "PAPER_VIT_QUANTIZER"]
