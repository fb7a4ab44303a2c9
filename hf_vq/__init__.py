"""hf_vq: vector-quantized networks that don't collapse (Huh et al., ICML 2023), for the Hugging Face stack."""

from .quantization import AlternatingOptimizer, QuantizerOutput, VectorQuantizer, end_step

__version__ = "0.1.0"

__all__ = ["AlternatingOptimizer", "QuantizerOutput", "VectorQuantizer", "end_step"]
