"""PyTorch VQ-ViT: a ViT whose tokens are vector-quantized after one encoder block (Huh et al., ICML 2023, A.1).

The transformer is transformers' own `ViTModel` (embeddings, `ViTLayer` blocks, final LayerNorm, pooler),
held as `self.vit` and run block by block so the quantizer can sit between two blocks. Holding a real
`ViTModel` keeps transformers' ViT checkpoint conversion (on-disk `vit.encoder.layer.N.attention.attention.
query` ↔ in-memory `vit.layers.N.attention.q_proj`) and its attention back-ends (eager, sdpa, flex, flash).
State-dict keys are those of `ViTForImageClassification` plus `quantizer.*`, so a ViT/DeiT checkpoint
initialises everything but the quantizer, and our checkpoints are written in ViT's on-disk format.

This file must not import diffusers: it is copied as remote code next to ViT checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_utils import PreTrainedModel
from transformers.models.vit.modeling_vit import ViTAttention, ViTLayer, ViTModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.output_capturing import capture_outputs

from ...quantization.layer import QuantizerOutput, VectorQuantizer
from ...quantization.registry import build_quantizer
from ..inputs import check_pixel_values
from ..loading import QuantizerCheckpointMixin, init_quantizer_weights, quantizer_dtype
from ..normalization import build_pre_quant_norm
from ..outputs import DeprecatedCodebookUsage
from ..remote_code import RemoteCodeModelMixin
from .configuration_vq_vit import VQViTConfig


@dataclass
class VQViTModelOutput(DeprecatedCodebookUsage, ModelOutput):
    """
    Output of [`VQViTModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Final LayerNorm output.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, *optional*):
            Pooler applied to the [CLS] token (None without a pooling layer).
        quantizer_loss (`torch.FloatTensor` of shape `()`):
            α·L_cmt (eq 10), the quantizer's term to add to any task loss.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            L_cmt: mean over tokens of ½‖z_e − z_q‖² (eqs 8–9); no gradient.
        codebook_indices (`torch.LongTensor` of shape `(batch_size, num_quantized_tokens)`):
            Code of each quantized token: all `sequence_length` tokens ([CLS] first) with
            `quantize_cls_token=True`, else the `num_patches` patch tokens.
        perplexity (`torch.FloatTensor` of shape `()`):
            2^H of the batch's code histogram (§5.1).
        active_codes (`torch.FloatTensor` of shape `()`):
            Fraction of the K codes selected at least once in the batch. Also readable as `codebook_usage`, a
            deprecated alias (FutureWarning) for one release.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            Embedding output and the output of each block, `(batch_size, sequence_length, hidden_size)` each.
            Entry `quantizer_layer` is that block's output before `pre_quant_norm` and quantization (z_e when
            `pre_quant_norm="none"`).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Attention weights of each block, `(batch_size, num_heads, sequence_length, sequence_length)`
            (eager attention).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_indices: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None
    active_codes: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class VQViTImageClassifierOutput(DeprecatedCodebookUsage, ModelOutput):
    """
    Output of [`VQViTForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Task loss (cross-entropy, or as `config.problem_type` says) plus `quantizer_loss`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Classification scores from the [CLS] token.
        quantizer_loss, commitment_loss, codebook_indices, perplexity, active_codes, hidden_states, attentions:
            As in [`VQViTModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    quantizer_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_indices: torch.LongTensor | None = None
    perplexity: torch.FloatTensor | None = None
    active_codes: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class VQViTPreTrainedModel(QuantizerCheckpointMixin, RemoteCodeModelMixin, PreTrainedModel):
    """Shared by the VQ-ViT models: a `ViTModel` trunk `self.vit`, the `self.pre_quant_norm` module (identity by
    default) and a `VectorQuantizer` `self.quantizer`."""

    config: VQViTConfig
    config_class = VQViTConfig
    # "vit" as in ViTForImageClassification, so ViT checkpoints map key for key.
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEmbeddings", "ViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": ViTLayer, "attentions": ViTAttention}
    _quantizer_dim_field = "hidden_size"
    # from_pretrained(dtype=fp16/bf16) keeps the quantizer in fp32: codes are gathered at full precision (A.1).
    _keep_in_fp32_modules_strict = ["quantizer"]
    # The loss is a batch mean (task + α·L_cmt): Trainer must divide it over gradient-accumulation steps.
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        if isinstance(module, VectorQuantizer):
            init_quantizer_weights(module)
        else:
            super()._init_weights(module)

    def _build_trunk(self, config: VQViTConfig, add_pooling_layer: bool) -> None:
        config._check_pre_quant_norm()  # again: a field may have been set after the config was built
        self.vit = ViTModel(config, add_pooling_layer=add_pooling_layer)
        self.pre_quant_norm = build_pre_quant_norm(
            config.pre_quant_norm, config.hidden_size, channel_first=False, eps=config.layer_norm_eps
        )
        # Built from this module's own imports (see VQVAEModel): as remote code the config has its own copy.
        with quantizer_dtype():
            self.quantizer = build_quantizer(config.quantizer["type"], config.hidden_size, False,
                                             **config.quantizer.options)

    def get_input_embeddings(self):
        return self.vit.embeddings.patch_embeddings

    def _check_pixel_values(self, pixel_values: torch.Tensor | None, interpolate_pos_encoding: bool | None) -> None:
        height, width = check_pixel_values(pixel_values, self.config.num_channels, "VQ-ViT")
        size = self.vit.embeddings.patch_embeddings.image_size
        if not interpolate_pos_encoding and (height, width) != tuple(size):
            raise ValueError(
                f"pixel_values is {height}×{width} but config.image_size={self.config.image_size}; resize the images "
                "or pass interpolate_pos_encoding=True"
            )

    def _quantize(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Tokens → (tokens after the quantizer, its output); `pre_quant_norm` sees only the quantized tokens."""
        if self.config.quantize_cls_token:
            vq = self.quantizer(self.pre_quant_norm(hidden_states))
            return vq.quantized, vq
        vq = self.quantizer(self.pre_quant_norm(hidden_states[:, 1:]))
        return torch.cat([hidden_states[:, :1], vq.quantized], dim=1), vq

    def _trunk_forward(
        self, pixel_values, interpolate_pos_encoding, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, QuantizerOutput]:
        """Embeddings → blocks 1..q → pre_quant_norm → quantizer → blocks q+1..L → LayerNorm (ViTModel.forward
        with the VQ)."""
        self._check_pixel_values(pixel_values, interpolate_pos_encoding)
        embeddings = self.vit.embeddings
        pixel_values = pixel_values.to(embeddings.patch_embeddings.projection.weight.dtype)
        hidden_states = embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=None
        )
        for index, layer in enumerate(self.vit.layers):
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
            if index + 1 == self.config.quantizer_layer:
                hidden_states, vq = self._quantize(hidden_states)
        return self.vit.layernorm(hidden_states), vq


class VQViTModel(VQViTPreTrainedModel):
    """The bare VQ-ViT: patch embeddings, ViT blocks with a quantizer after block `config.quantizer_layer`,
    final LayerNorm and (optionally) ViT's pooler."""

    def __init__(self, config: VQViTConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self._build_trunk(config, add_pooling_layer)
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VQViTModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images, preprocessed as the checkpoint's image processor does.
        interpolate_pos_encoding (`bool`, *optional*):
            Interpolate the position embeddings to the input resolution.
        """
        sequence_output, vq = self._trunk_forward(pixel_values, interpolate_pos_encoding, **kwargs)
        pooled_output = self.vit.pooler(sequence_output) if self.vit.pooler is not None else None
        return VQViTModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            quantizer_loss=vq.loss,
            commitment_loss=vq.commitment,
            codebook_indices=vq.indices,
            perplexity=vq.perplexity,
            active_codes=vq.active_codes,
        )


class VQViTForImageClassification(VQViTPreTrainedModel):
    """VQ-ViT with a linear classifier on the final [CLS] token, as `ViTForImageClassification`."""

    def __init__(self, config: VQViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_trunk(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def _check_labels(self, labels: torch.Tensor, logits: torch.Tensor) -> None:
        """Named errors for labels that transformers' loss would reject deep in torch (or, on CUDA, with a
        device-side assert). The problem type follows transformers' rule when `config.problem_type` is unset:
        one label → regression; long/int labels → single-label; anything else → multi-label."""
        batch, num_labels = logits.shape
        problem = self.config.problem_type or (
            "regression" if num_labels == 1
            else "single_label_classification" if labels.dtype in (torch.long, torch.int)
            else "multi_label_classification"
        )
        if problem == "single_label_classification":
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise TypeError(
                    "labels must be integer class ids (torch.long) for single-label classification, got "
                    f"{labels.dtype}"
                )
            if labels.numel() != batch:
                raise ValueError(
                    f"labels has shape {tuple(labels.shape)} but pixel_values holds {batch} images: pass one class "
                    "id per image"
                )
            valid = (labels == -100) | ((labels >= 0) & (labels < num_labels))  # -100: ignored by cross-entropy
            if not bool(valid.all()):  # one device sync, before an out-of-range id reaches the loss kernel
                raise ValueError(
                    f"labels must be class ids in [0, {num_labels}) (config.num_labels) or -100, got values from "
                    f"{int(labels.min())} to {int(labels.max())}"
                )
            return
        if labels.numel() != batch * num_labels:
            class_ids_as_floats = self.config.problem_type is None and labels.numel() == batch
            raise ValueError(
                f"labels has shape {tuple(labels.shape)}, but {problem} takes float targets of shape "
                f"({batch}, {num_labels}) (batch_size, config.num_labels)"
                + (f"; with config.problem_type unset, only long/int labels are class ids (transformers' rule): pass "
                   f"class ids as torch.long, not {labels.dtype}" if class_ids_as_floats else "")
            )

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VQViTImageClassifierOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images, preprocessed as the checkpoint's image processor does.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Targets; `loss` is then the task loss plus α·L_cmt.
        interpolate_pos_encoding (`bool`, *optional*):
            Interpolate the position embeddings to the input resolution.
        """
        sequence_output, vq = self._trunk_forward(pixel_values, interpolate_pos_encoding, **kwargs)
        logits = self.classifier(sequence_output[:, 0, :])
        loss = None
        if labels is not None:
            self._check_labels(labels, logits)
            loss = self.loss_function(labels, logits, self.config) + vq.loss
        return VQViTImageClassifierOutput(
            loss=loss,
            logits=logits,
            quantizer_loss=vq.loss,
            commitment_loss=vq.commitment,
            codebook_indices=vq.indices,
            perplexity=vq.perplexity,
            active_codes=vq.active_codes,
        )


__all__ = [
    "VQViTForImageClassification",
    "VQViTImageClassifierOutput",
    "VQViTModel",
    "VQViTModelOutput",
    "VQViTPreTrainedModel",
]
