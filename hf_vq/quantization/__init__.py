"""The vector-quantization layer and its parts: search, affine, replacement, k-means, alternation, metrics; and
the codebook-free siblings with the same output contract (FSQ, LFQ)."""

from .alternating import AlternatingOptimizer, end_step, find_quantizers
from .fsq import FiniteScalarQuantizer
from .layer import QuantizerOutput, VectorQuantizer
from .lfq import LookupFreeQuantizer

__all__ = ["AlternatingOptimizer", "FiniteScalarQuantizer", "LookupFreeQuantizer", "QuantizerOutput",
           "VectorQuantizer", "end_step", "find_quantizers"]
