"""The vector-quantization layer and its parts: search, affine, replacement, k-means, alternation, metrics."""

from .alternating import AlternatingOptimizer, end_step, find_quantizers
from .layer import QuantizerOutput, VectorQuantizer

__all__ = ["AlternatingOptimizer", "QuantizerOutput", "VectorQuantizer", "end_step", "find_quantizers"]
