"""Hugging Face models around `VectorQuantizer`: VQ-ViT (transformers) and VQ-VAE (diffusers blocks).

Importing this package registers both with the transformers Auto classes (AutoConfig, AutoModel,
AutoModelForImageClassification, and ViT's image processors for VQ-ViT), so `AutoModel.from_pretrained`
and `pipeline("image-classification", ...)` load saved models with the local code. Saved folders also
carry that code (see `remote_code.py`) for `trust_remote_code=True` where hf_vq is not installed.
"""

from .quantizer_config import QuantizerConfig
from .vq_vae import VQVAEConfig, VQVAEEncoderOutput, VQVAEModel, VQVAEOutput
from .vq_vit import VQViTConfig, VQViTForImageClassification, VQViTImageClassifierOutput, VQViTModel, VQViTModelOutput


def register_auto_classes() -> None:
    """Register the models with transformers' Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
    from transformers.utils import is_torchvision_available

    AutoConfig.register(VQViTConfig.model_type, VQViTConfig, exist_ok=True)
    AutoModel.register(VQViTConfig, VQViTModel, exist_ok=True)
    AutoModelForImageClassification.register(VQViTConfig, VQViTForImageClassification, exist_ok=True)
    processors = {"pil": ViTImageProcessorPil}
    if is_torchvision_available():  # the default backend; without torchvision transformers falls back to PIL
        from transformers.models.vit.image_processing_vit import ViTImageProcessor

        processors["torchvision"] = ViTImageProcessor
    AutoImageProcessor.register(VQViTConfig, image_processor_classes=processors, exist_ok=True)

    AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
    AutoModel.register(VQVAEConfig, VQVAEModel, exist_ok=True)


register_auto_classes()

__all__ = [
    "QuantizerConfig",
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
