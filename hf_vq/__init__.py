"""hf_vq: vector-quantized networks that don't collapse (Huh et al., ICML 2023), for the Hugging Face stack."""

__version__ = "0.1.0"
