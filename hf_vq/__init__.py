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
from .quantization import (
    AlternatingOptimizer,
    GroupedVectorQuantizer,
    QuantizerOutput,
    ResidualVectorQuantizer,
    VectorQuantizer,
    end_step,
)
from .version import __version__ as __version__

__all__ = [
    "AlternatingOptimizer",
    "GroupedVectorQuantizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "VQImageProcessor",
    "VQVAEConfig",
    "VQVAEModel",
    "VQViTConfig",
    "VQViTForImageClassification",
    "VQViTModel",
    "VectorQuantizer",
    "end_step",
]
