"""The vector-quantization layer and its parts: search, affine, replacement, k-means, alternation, metrics;
residual and grouped quantizers made of it, the codebook-free siblings with the same output contract (FSQ,
LFQ), and the registry of quantizer types that model configs name."""

from .alternating import AlternatingOptimizer, end_step, find_quantizers
from .composite import MultiCodebookOutput, MultiCodebookQuantizer, model_quantizers
from .fsq import FiniteScalarQuantizer
from .grouped import GroupedVectorQuantizer
from .layer import QuantizerOutput, VectorQuantizer
from .lfq import LookupFreeQuantizer
from .registry import build_quantizer, register_quantizer_type
from .residual import ResidualVectorQuantizer

__all__ = [
    "AlternatingOptimizer", "FiniteScalarQuantizer", "GroupedVectorQuantizer", "LookupFreeQuantizer",
    "MultiCodebookOutput", "MultiCodebookQuantizer", "QuantizerOutput", "ResidualVectorQuantizer", "VectorQuantizer",
    "build_quantizer", "end_step", "find_quantizers", "model_quantizers", "register_quantizer_type",
]
