"""Image processor of the hf_vq models: transformers' PIL-backend processor (resize, rescale, normalise) that also
converts every image to the model's channel count.

transformers' pipelines hand every image over as RGB (`load_image` converts it), and its processors keep the
channels they are given, so a 1-channel model (a VQ-ViT trained on digits or Fashion-MNIST) fails in
`pipeline("image-classification", ...)` with "mean must have 3 elements". `VQImageProcessor(num_channels=1)`
converts to greyscale as PIL's mode "L" does (ITU-R 601-2 luma, also for arrays), `num_channels=3` to RGB
(greyscale repeated, alpha dropped). Training applies the same processor, so inference sees what training saw.

This file is saved next to the model as remote code (`AutoImageProcessor` in config.json's `auto_map`): it must
import nothing but numpy, PIL and transformers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs, Unpack

# PIL's "L" conversion: L = R·299/1000 + G·587/1000 + B·114/1000 (ITU-R 601-2 luma).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class VQImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    num_channels (`int`, *optional*, defaults to 3):
        Channels of the model's input: every image is converted to 1 (greyscale) or 3 (RGB) channels first.
    """

    num_channels: int


class VQImageProcessor(PilBackend):
    r"""
    Image processor for hf_vq models: convert to `num_channels` (1 or 3), resize to `size` with `resample`,
    rescale by `rescale_factor` (1/255) and normalise with `image_mean`/`image_std`.

    Defaults: 224×224, bicubic, mean = std = 0.5 (pixels in [-1, 1]) for any number of channels. A per-channel
    `image_mean`/`image_std` needs `num_channels` values.

    Example:

    ```python
    >>> from hf_vq import VQImageProcessor
    >>> processor = VQImageProcessor(size={"height": 28, "width": 28}, num_channels=1)
    >>> processor(images=image, return_tensors="pt").pixel_values.shape  # any PIL image, RGB or greyscale
    torch.Size([1, 1, 28, 28])
    ```
    """

    valid_kwargs = VQImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    image_mean = 0.5
    image_std = 0.5
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True
    num_channels = 3

    def __init__(self, **kwargs: Unpack[VQImageProcessorKwargs]):
        super().__init__(**kwargs)
        self._check_channels(self.num_channels, self.image_mean, self.image_std)

    # Remote code: the model's config.json names this class in its auto_map ("AutoImageProcessor") and the
    # model's save_pretrained copies this file. preprocessor_config.json names no class and has no auto_map:
    # with either, transformers' pipelines also look for a video processor of the same name and, finding
    # custom code for it, ask the user whether to trust it (or fail after a timeout), even with hf_vq
    # installed. Without them AutoImageProcessor reads the model config, as the Auto classes do.
    @classmethod
    def register_for_auto_class(cls, auto_class="AutoImageProcessor"):
        pass  # transformers calls it on classes loaded as remote code; see above

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("image_processor_type", None)
        out.pop("auto_map", None)
        return out

    @staticmethod
    def _check_channels(num_channels: Any, image_mean: Any, image_std: Any) -> None:
        if num_channels not in (1, 3) or isinstance(num_channels, bool):
            raise ValueError(f"num_channels must be 1 (greyscale) or 3 (RGB), got {num_channels!r}")
        for name, value in (("image_mean", image_mean), ("image_std", image_std)):
            if isinstance(value, (list, tuple)) and len(value) != num_channels:
                raise ValueError(
                    f"{name} has {len(value)} values but num_channels={num_channels}: give one value per channel, "
                    f"or a single float for all"
                )

    def _validate_preprocess_kwargs(self, num_channels=None, image_mean=None, image_std=None, **kwargs):
        self._check_channels(num_channels, image_mean, image_std)
        super()._validate_preprocess_kwargs(image_mean=image_mean, image_std=image_std, **kwargs)

    def process_image(self, image, *args, num_channels: int | None = None, **kwargs) -> np.ndarray:
        """One image (PIL, numpy or torch; channels first or last) → (num_channels, H, W) numpy array."""
        num_channels = self.num_channels if num_channels is None else num_channels
        if isinstance(image, Image.Image):
            # PIL converts any mode (P, LA, RGBA, CMYK, I;16, ...); alpha is dropped
            image = image.convert("L" if num_channels == 1 else "RGB")
        array = super().process_image(image, *args, **kwargs)  # channels first
        return convert_channels(array, num_channels)

    def postprocess(self, pixel_values, image_mean=None, image_std=None) -> list[Image.Image]:
        """Model-space images (B, C, H, W) (e.g. a VQ-VAE's `reconstruction`) → PIL images: the inverse of the
        rescale and normalisation, clipped to [0, 255]; mode "L" for 1 channel, "RGB" for 3."""
        values = np.asarray(pixel_values.detach().float().cpu() if hasattr(pixel_values, "detach") else pixel_values,
                            dtype=np.float32)
        if values.ndim != 4 or values.shape[1] not in (1, 3):
            raise ValueError(f"pixel_values must be (batch_size, 1 or 3, height, width), got shape {values.shape}")
        mean = np.asarray(self.image_mean if image_mean is None else image_mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.image_std if image_std is None else image_std, dtype=np.float32).reshape(1, -1, 1, 1)
        if self.do_normalize:
            values = values * std + mean
        if self.do_rescale:
            values = values / self.rescale_factor
        pixels = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return [Image.fromarray(p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0)) for p in pixels]  # "L" / "RGB"


def convert_channels(image: np.ndarray, num_channels: int) -> np.ndarray:
    """(C, H, W) with C in 1, 3, 4 → (num_channels, H, W): luma for 3 → 1 (rounded as PIL does for uint8),
    repeated for 1 → 3, alpha dropped."""
    channels = image.shape[0]
    if channels == 4:
        image, channels = image[:3], 3
    if channels == num_channels:
        return image
    if channels == 1 and num_channels == 3:
        return np.repeat(image, 3, axis=0)
    if channels == 3 and num_channels == 1:
        luma = np.tensordot(np.asarray(LUMA_WEIGHTS, dtype=np.float64), image.astype(np.float64), axes=1)[None]
        return np.round(luma).astype(image.dtype) if image.dtype == np.uint8 else luma.astype(image.dtype)
    raise ValueError(f"cannot convert an image of {channels} channels (shape {image.shape}) to {num_channels}")


__all__ = ["VQImageProcessor", "convert_channels"]
