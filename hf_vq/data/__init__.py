"""Image datasets for hf_vq: offline builders (`builders.py`), one loader for every source (`loading.py`), and
the transform to model inputs through the image processor a trained model is saved with (`transforms.py`).

    python -m hf_vq.data list
    python -m hf_vq.data build patches --output data/patches [--stride 16] [--image-size 32]
        [--max-train N] [--max-test N] [--overwrite]
"""

from .builders import (
    BUILD_RECORD,
    BUILDERS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    PATCH_PHOTOS,
    PATCH_SIZE,
    SEED,
    build_dataset,
    build_digits,
    build_fashion_mnist,
    build_patches,
    default_data_dir,
    patch_grid,
)
from .cli import main
from .loading import OFFLINE_PREFIX, HubUnavailableError, load_image_dataset
from .transforms import NORMALIZATIONS, ImageTransform, collate_fn, image_processor

__all__ = [
    "BUILDERS", "BUILD_RECORD", "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "NORMALIZATIONS", "OFFLINE_PREFIX",
    "PATCH_PHOTOS", "PATCH_SIZE", "SEED", "HubUnavailableError", "ImageTransform", "build_dataset", "build_digits",
    "build_fashion_mnist", "build_patches", "collate_fn", "default_data_dir", "image_processor",
    "load_image_dataset", "main", "patch_grid",
]
