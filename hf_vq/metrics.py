"""Public home of the VQ metrics (`from hf_vq import metrics`); see `hf_vq.quantization.metrics`."""

from .quantization.metrics import (
    active_code_ratio,
    code_histogram,
    divergence,
    gradient_gap,
    perplexity,
    quantization_error,
)

__all__ = ["active_code_ratio", "code_histogram", "divergence", "gradient_gap", "perplexity", "quantization_error"]
