"""Training-time augmentation on the batch tensor: RandomResizedCrop + horizontal flip (Table 6's ViT recipe).

It runs in the training step on the already resized (B, C, H, W) batch with one `grid_sample`, drawing from
torch's global generator, which `seed_step` seeds per step: a resumed run draws the same crops. (Cropping
the resized image rather than the original loses a little resolution for large crops; for the 224×224
ImageNet recipe the difference is small, and it keeps augmentation out of the data workers' RNG.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "random_resized_crop")


def random_resized_crop(
    pixels: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Each image: a crop of a random area fraction in `scale` and aspect ratio in `ratio` (log-uniform), at a
    random position, resized back to the input size (bilinear), mirrored with probability ½ when `flip`."""
    b = pixels.shape[0]
    device = pixels.device
    area = torch.empty(b, device=device).uniform_(*scale)
    log_ratio = torch.empty(b, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = log_ratio.exp()
    width = (area * aspect).sqrt().clamp(max=1.0)  # fractions of the image side
    height = (area / aspect).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, device=device) * 2 - 1) * (1 - width)  # centre in [-1, 1] coordinates
    cy = (torch.rand(b, device=device) * 2 - 1) * (1 - height)
    sign = torch.where(torch.rand(b, device=device) < 0.5, -1.0, 1.0) if flip else torch.ones(b, device=device)
    theta = torch.zeros(b, 2, 3, device=device, dtype=torch.float32)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    crops = F.grid_sample(pixels.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return crops.to(pixels.dtype)


def augment_batch(batch: dict, kind: str) -> dict:
    """`batch` with its pixel_values augmented as `data.augment` says ("none": unchanged)."""
    if kind == "none":
        return batch
    if kind == "random_resized_crop":
        return {**batch, "pixel_values": random_resized_crop(batch["pixel_values"])}
    raise ValueError(f"data.augment must be one of {AUGMENTATIONS}, got {kind!r}")


__all__ = ["AUGMENTATIONS", "augment_batch", "random_resized_crop"]
