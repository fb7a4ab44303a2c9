"""Checks of a model's `pixel_values` shared by both models, before any work: errors that name the argument
and the config field, instead of a shape error deep in a convolution or attention kernel."""

from __future__ import annotations

import torch


def check_pixel_values(pixel_values: torch.Tensor | None, num_channels: int, model_name: str) -> tuple[int, int]:
    """Raise for a missing, non-4-D, integer, empty or wrong-channel `pixel_values`; returns (height, width)."""
    if pixel_values is None:
        raise ValueError("You have to specify pixel_values")
    if pixel_values.dim() != 4:
        raise ValueError(
            f"pixel_values must be (batch_size, num_channels, height, width), got shape {tuple(pixel_values.shape)}"
        )
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"pixel_values must be a floating-point tensor, got {pixel_values.dtype}: preprocess images with the "
            "model's image processor (AutoImageProcessor.from_pretrained), which scales and normalises them"
        )
    if pixel_values.shape[0] == 0:  # transformers' and diffusers' attention cannot reshape an empty batch
        raise ValueError(f"pixel_values holds no images (batch size 0); the {model_name} needs at least one")
    channels, height, width = pixel_values.shape[1:]
    if channels != num_channels:
        raise ValueError(f"pixel_values has {channels} channels but config.num_channels={num_channels}")
    return height, width
