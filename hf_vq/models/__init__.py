"""Hugging Face models around `VectorQuantizer`: VQ-ViT (transformers) and VQ-VAE (diffusers blocks).

Importing this package registers both with the transformers Auto classes (AutoConfig, AutoModel,
AutoModelForImageClassification, and `VQImageProcessor` with AutoImageProcessor), so `AutoModel.from_pretrained`
and `pipeline("image-classification", ...)` load saved models with the local code. Saved folders also
carry that code (see `remote_code.py`; the processor's file is saved with it) for `trust_remote_code=True`
where hf_vq is not installed.
"""

from .image_processing_vq import VQImageProcessor
from .quantizer_config import QuantizerConfig
from .vq_vae import VQVAEConfig, VQVAEEncoderOutput, VQVAEModel, VQVAEOutput
from .vq_vit import VQViTConfig, VQViTForImageClassification, VQViTImageClassifierOutput, VQViTModel, VQViTModelOutput


def register_auto_classes() -> None:
    """Register the models with transformers' Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

    AutoConfig.register(VQViTConfig.model_type, VQViTConfig, exist_ok=True)
    AutoModel.register(VQViTConfig, VQViTModel, exist_ok=True)
    AutoModelForImageClassification.register(VQViTConfig, VQViTForImageClassification, exist_ok=True)
    # PIL backend only: it is the one that converts channels (see image_processing_vq.py); a folder whose
    # preprocessor_config.json names ViT's processor still loads that one, by its name.
    for config_class in (VQViTConfig, VQVAEConfig):
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": VQImageProcessor}, exist_ok=True)

    AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
    AutoModel.register(VQVAEConfig, VQVAEModel, exist_ok=True)


register_auto_classes()

__all__ = [
    "QuantizerConfig",
    "VQImageProcessor",
    "VQVAEConfig",
    "VQVAEEncoderOutput",
    "VQVAEModel",
    "VQVAEOutput",
    "VQViTConfig",
    "VQViTForImageClassification",
    "VQViTImageClassifierOutput",
    "VQViTModel",
    "VQViTModelOutput",
    "register_auto_classes",
]
