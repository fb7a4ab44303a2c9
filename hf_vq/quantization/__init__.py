"""The vector-quantization layer and its parts: search, affine, replacement, k-means, alternation, metrics."""

from .alternating import AlternatingOptimizer, end_step, find_quantizers
from .fsq import FiniteScalarQuantizer
from .layer import QuantizerOutput, VectorQuantizer

__all__ = ["AlternatingOptimizer", "FiniteScalarQuantizer", "QuantizerOutput", "VectorQuantizer", "end_step",
           "find_quantizers"]
