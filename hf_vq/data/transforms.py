"""Images to model inputs through ONE image processor: the one a training run saves with its model, which the
training transform applies too, so that training and inference preprocess identically."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

# (mean, std) of x/255 per named normalisation
NORMALIZATIONS = {"minus_one_one": (0.5, 0.5), "zero_one": (0.0, 1.0)}
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def image_processor(image_size: int | tuple[int, int], mean: Sequence[float], std: Sequence[float],
                    resample: str = "bicubic"):
    """The models' `VQImageProcessor` (PIL backend): convert to `len(mean)` channels (1: greyscale as PIL's mode
    "L", 3: RGB), resize to `image_size` (int: square, or (height, width)) with PIL's antialiased `resample`
    ("bicubic" or "bilinear"; a no-op at that size already), x/255, then (x − mean)/std with one mean and std
    per channel."""
    from ..models.image_processing_vq import VQImageProcessor

    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return VQImageProcessor(
        do_resize=True, size={"height": height, "width": width}, resample=RESAMPLE[resample], do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(mean), image_std=list(std), num_channels=len(mean),
    )


class ImageTransform:
    """Batch transform for ``Dataset.with_transform``: PIL images -> normalised float tensors.

    Each image goes through ``self.processor``, the `image_processor` of ``image_size``, ``num_channels`` (it
    converts to 1: PIL mode "L", or 3: "RGB"; alpha is dropped) and ``resample`` ("bicubic" or "bilinear") with
    the mean and std of ``normalize``: "minus_one_one" -> [-1, 1], "zero_one" -> [0, 1], or ``(mean, std)``
    (scalars or one value per channel) -> (x - mean) / std, x in [0, 1].

    Returns ``{"pixel_values": [(num_channels, H, W) float32 tensor, ...], "labels": [int, ...]}``; "labels"
    only when the batch has ``label_column``. Picklable, so DataLoader workers can use it.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        num_channels: int = 3,
        normalize: str | tuple[float | Sequence[float], float | Sequence[float]] = "minus_one_one",
        *,
        image_column: str = "image",
        label_column: str = "label",
        resample: str = "bicubic",
    ):
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
        if resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {list(RESAMPLE)}, got {resample!r}")
        if isinstance(normalize, str) and normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be 'minus_one_one', 'zero_one' or (mean, std), got {normalize!r}")
        mean, std = NORMALIZATIONS[normalize] if isinstance(normalize, str) else normalize
        mean, std = (torch.as_tensor(v, dtype=torch.float64).reshape(-1).tolist() for v in (mean, std))
        if {len(mean), len(std)} - {1, num_channels}:
            raise ValueError(f"mean and std need 1 or {num_channels} values, got {mean} and {std}")
        per_channel = [v * (num_channels // len(v)) for v in (mean, std)]
        self.processor = image_processor(image_size, *per_channel, resample)
        self.mode = "L" if num_channels == 1 else "RGB"  # the PIL mode the processor converts every image to
        self.image_column = image_column
        self.label_column = label_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        pixels = self.processor(images=batch[self.image_column], return_tensors="pt")["pixel_values"]
        out = {"pixel_values": list(pixels)}
        if self.label_column in batch:
            out["labels"] = list(batch[self.label_column])
        return out


def collate_fn(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack ``ImageTransform`` examples: ``{"pixel_values": (B, C, H, W) float32, "labels": (B,) int64}``.

    "labels" only when the examples have them.
    """
    batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.int64)
    return batch
