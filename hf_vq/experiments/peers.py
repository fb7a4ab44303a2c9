"""Other libraries' quantizers inside our VQ-VAE, for the head-to-head's cross-check rows (`--only frontier`).

`vector_quantize_pytorch.VectorQuantize(rotation_trick=True)` (pip install vector-quantize-pytorch) with a
learnable codebook, initialised as ours: its loss w·MSE(z_q, z_e) sends w·2(z_q − z_e)/(N·D) to the codes and w·2(z_e − z_q)/(N·D)
to the encoder, which is our α·[(1−β)·… + β·…] with β = 0.5 and α = 2w. So the row it is compared with is our
`rotation_trick` layer at β = 0.5 and the same α; everything else (model, data, optimizer, schedule,
evaluation) is the training loop's, shared by every row.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import VQVAEConfig, VQVAEModel
from ..quantization.base import Quantizer, QuantizerOutput, histogram_perplexity


class VQPRotationTrick(Quantizer):
    """vector-quantize-pytorch's `VectorQuantize` (rotation trick, learnable codebook) with our output contract.

    Args:
        dim: D. codebook_size: K. commitment_weight: α of our layer (their weight is α/2, see the module
        docstring). Input (B, D, *spatial), channel first, as the VQ-VAE calls its quantizer.
    """

    channel_first = True

    def __init__(self, dim: int, codebook_size: int, commitment_weight: float):
        super().__init__()
        try:
            from vector_quantize_pytorch import VectorQuantize
        except ImportError as err:
            raise ImportError("the vector-quantize-pytorch cross-check row needs `pip install vector-quantize-pytorch`") from err
        self.dim, self.codebook_size = dim, codebook_size
        self.peer = VectorQuantize(dim=dim, codebook_size=codebook_size, rotation_trick=True, learnable_codebook=True,
                                   ema_update=False, commitment_weight=commitment_weight / 2.0)
        # Our codebook init (Kaiming normal, std √(2/D)): theirs is kaiming_uniform_ over a (1, K, D) tensor, whose
        # fan-in K·D puts every code within ±√(6/(K·D)) ≈ 0.02 of the origin, a different experiment.
        with torch.no_grad():
            self.peer._codebook.embed.normal_(0.0, (2.0 / dim) ** 0.5)

    def codebook_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.peer.parameters() if p.requires_grad]

    def get_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.peer.get_codes_from_indices(indices).movedim(-1, 1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        tokens = z.movedim(1, -1)  # (B, *spatial, D)
        shape = tokens.shape
        quantized, indices, loss = self.peer(tokens.reshape(shape[0], -1, shape[-1]))
        quantized = quantized.reshape(shape).movedim(-1, 1)
        indices = indices.reshape(shape[:-1])
        counts = torch.bincount(indices.reshape(-1), minlength=self.codebook_size)
        perplexity, active = histogram_perplexity(counts)
        commitment = (z.detach().float() - quantized.detach().float()).pow(2).mean()
        return QuantizerOutput(quantized=quantized, indices=indices, loss=loss.float().reshape(()),
                               commitment=commitment, perplexity=perplexity, active_codes=active)


class VQPRotationVAE(VQVAEModel):
    """Our VQ-VAE with `VQPRotationTrick` as its quantizer (training and evaluation only: not saved)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        self.quantizer = VQPRotationTrick(config.latent_channels, config.quantizer["codebook_size"],
                                          config.quantizer["commitment_weight"])


PEER_MODELS = {"vqp_rotation": VQPRotationVAE}


def peer_model(name: str) -> type:
    if name not in PEER_MODELS:
        raise ValueError(f"unknown peer {name!r}; choose among {sorted(PEER_MODELS)}")
    return PEER_MODELS[name]


__all__ = ["PEER_MODELS", "VQPRotationTrick", "VQPRotationVAE", "peer_model"]
