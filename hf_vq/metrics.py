"""Public home of the VQ metrics (`from hf_vq import metrics`); see `hf_vq.quantization.metrics`."""

from .quantization.affine import affine_statistics
from .quantization.metrics import (
    active_code_ratio,
    active_codes,
    code_histogram,
    codes_in_reach,
    collapse_diagnostics,
    divergence,
    effective_rank,
    gradient_gap,
    perplexity,
    quantization_error,
    recorded_inputs,
)

__all__ = ["active_code_ratio", "active_codes", "affine_statistics", "code_histogram", "codes_in_reach",
           "collapse_diagnostics", "divergence", "effective_rank", "gradient_gap", "perplexity", "quantization_error",
           "recorded_inputs"]
