"""VQ-VAE: diffusers' VQModel encoder/decoder around the paper's vector quantizer."""

from .configuration_vq_vae import PAPER_VAE_QUANTIZER, VQVAEConfig
from .modeling_vq_vae import VQVAEEncoderOutput, VQVAEModel, VQVAEOutput, VQVAEPreTrainedModel

__all__ = [
    "PAPER_VAE_QUANTIZER", "VQVAEConfig", "VQVAEEncoderOutput", "VQVAEModel", "VQVAEOutput", "VQVAEPreTrainedModel"
]
