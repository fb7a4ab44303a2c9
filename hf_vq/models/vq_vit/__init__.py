"""VQ-ViT: ViT with a vector quantizer between two encoder blocks."""

from .configuration_vq_vit import PAPER_VIT_QUANTIZER, VQViTConfig
from .modeling_vq_vit import (
    VQViTForImageClassification,
    VQViTImageClassifierOutput,
    VQViTModel,
    VQViTModelOutput,
    VQViTPreTrainedModel,
)

__all__ = [
    "PAPER_VIT_QUANTIZER",
    "VQViTConfig",
    "VQViTForImageClassification",
    "VQViTImageClassifierOutput",
    "VQViTModel",
    "VQViTModelOutput",
    "VQViTPreTrainedModel",
]
