"""hf_vq: vector-quantized networks that don't collapse (Huh et al., ICML 2023), for the Hugging Face stack.

Importing hf_vq registers the VQ-ViT and VQ-VAE models with transformers' Auto classes.
"""

from .models import (
    QuantizerConfig,
    VQImageProcessor,
    VQVAEConfig,
    VQVAEModel,
    VQViTConfig,
    VQViTForImageClassification,
    VQViTModel,
)
from .quantization import AlternatingOptimizer, QuantizerOutput, VectorQuantizer, end_step
from .version import __version__ as __version__

__all__ = [
    "AlternatingOptimizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "VQImageProcessor",
    "VQVAEConfig",
    "VQVAEModel",
    "VQViTConfig",
    "VQViTForImageClassification",
    "VQViTModel",
    "VectorQuantizer",
    "end_step",
]
