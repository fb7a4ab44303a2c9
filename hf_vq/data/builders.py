"""Offline image datasets, built from files that installed packages ship (no network), written atomically.

Each builder returns a ``datasets.DatasetDict`` with splits ``"train"``/``"test"`` and features
``{"image": Image(), "label": ClassLabel(names=...)}``:

- ``fashion_mnist``: Fashion-MNIST, 60,000 train / 10,000 test 28x28 grey images, 10 classes, read from the
  IDX files of the Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
- ``digits``: the UCI handwritten digits of scikit-learn's ``load_digits``, shipped with hf_vq (``files/digits.npz``,
  CC BY 4.0, see ``files/README.md``): 1,797 8x8 grey images (16 levels scaled to 0..255), 10 classes, a fixed-seed
  80/20 split.
- ``patches``: 32x32 RGB patches cut from the colour photos bundled with scikit-image; label = source photo.

``build_dataset`` writes a build to ``DIR.tmp-*`` and renames it to ``DIR`` when complete, so ``DIR`` is either
absent or a complete dataset; a build killed hard leaves a ``DIR.tmp-*`` folder that is never read and can be
deleted. ``DIR/hf_vq_build.json`` records the builder and its options; building again into a complete ``DIR``
with the same options does nothing.
"""

from __future__ import annotations

import gzip
import importlib.util
import inspect
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

SEED = 0
"""Seed of every random choice in this module (splits, caps)."""

BUILD_RECORD = "hf_vq_build.json"
"""File in a built dataset folder recording ``{"builder": name, "options": {...}}``."""

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the Fashion-MNIST IDX files."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DIGITS_FILE = Path(__file__).with_name("files") / "digits.npz"
"""scikit-learn's ``load_digits`` arrays (UCI, CC BY 4.0): ``images`` (1797, 8, 8) uint8 in 0..16, ``labels``."""

PATCH_PHOTOS = (
    "astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
    "stereo_motorcycle",
)
"""RGB photos shipped inside the scikit-image wheel (``skimage.data``); ``stereo_motorcycle`` is its left view.

Left out: grey images, ``cat`` (the same photo as ``chelsea``), ``logo`` (RGBA graphic), ``colorwheel``
(synthetic), and the images that ``skimage.data`` downloads on first use.
"""

PATCH_SIZE = 32
PATCH_BLOCK = 128
"""Side of the square blocks that the patch train/test split assigns whole (a multiple of ``PATCH_SIZE``)."""

PATCH_MIN_STD = 1.0
"""Patches whose largest per-channel standard deviation (0..255 scale) is below this are flat background and
dropped."""


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) of unsigned bytes into a uint8 array of the shape its header gives."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {data.size} values")
    return data.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for path in (root / f"{stem}.gz", root / stem):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install the Debian/Ubuntu package with "
        "`apt-get install dataset-fashion-mnist` (it puts the IDX files in /usr/share/datasets/fashion-mnist), "
        "or pass root= a folder holding train-/t10k-images-idx3-ubyte and train-/t10k-labels-idx1-ubyte."
    )


def _cap(images: np.ndarray, labels: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Keep a fixed-seed random subset of ``limit`` examples (in their original order); ``None`` keeps all."""
    if limit is None or limit >= len(images):
        return images, labels
    if limit < 1:
        raise ValueError(f"a cap on the number of examples must be >= 1, got {limit}")
    keep = np.sort(np.random.default_rng(SEED).choice(len(images), size=limit, replace=False))
    return images[keep], labels[keep]


def _to_dataset_dict(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    *,
    image_size: int | None,
    max_train: int | None,
    max_test: int | None,
) -> datasets.DatasetDict:
    """Turn ``{"train": (images, labels), "test": ...}`` uint8 arrays (N,H,W) or (N,H,W,3) into a DatasetDict.

    Caps each split (``max_train``/``max_test``), resizes to ``image_size`` x ``image_size`` with PIL bicubic when
    given, and stores images PNG-encoded.
    """
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names))})
    caps = {"train": max_train, "test": max_test}
    out = {}
    for split, (images, labels) in splits.items():
        images, labels = _cap(images, labels, caps[split])
        if image_size is not None and images.shape[1:3] != (image_size, image_size):
            images = [
                np.asarray(Image.fromarray(a).resize((image_size, image_size), Image.Resampling.BICUBIC))
                for a in images
            ]
        out[split] = datasets.Dataset.from_dict(
            {"image": list(images), "label": labels.astype(np.int64).tolist()}, features=features, split=split
        )
    return datasets.DatasetDict(out)


def build_fashion_mnist(
    *,
    image_size: int | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    root: str | Path = FASHION_MNIST_DIR,
) -> datasets.DatasetDict:
    """Fashion-MNIST from the IDX files of the Debian package ``dataset-fashion-mnist`` (no network).

    Returns splits train (60,000) / test (10,000) of 28x28 grey (mode ``"L"``) images, or ``image_size`` squared
    when given; labels are ``FASHION_MNIST_CLASSES``. Raises FileNotFoundError naming the apt package if the
    files are missing.
    """
    root = Path(root)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"Fashion-MNIST {split}: images {images.shape} do not match labels {labels.shape}")
        splits[split] = (images, labels)
    return _to_dataset_dict(
        splits, FASHION_MNIST_CLASSES, image_size=image_size, max_train=max_train, max_test=max_test
    )


def build_digits(
    *, image_size: int | None = None, max_train: int | None = None, max_test: int | None = None
) -> datasets.DatasetDict:
    """The handwritten digits of scikit-learn's ``load_digits`` (``DIGITS_FILE``, shipped with hf_vq: no scikit-learn
    needed): 1,797 8x8 grey images, 16 levels scaled to 0..255, classes "0".."9".

    The split is a fixed-seed permutation whose last 20 % is test: train 1,438 / test 359.
    """
    with np.load(DIGITS_FILE, allow_pickle=False) as digits:
        images = np.rint(digits["images"] * (255.0 / 16.0)).astype(np.uint8)
        labels = digits["labels"].astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(images))
    n_test = round(0.2 * len(images))
    train, test = order[:-n_test], order[-n_test:]
    return _to_dataset_dict(
        {"train": (images[train], labels[train]), "test": (images[test], labels[test])},
        [str(d) for d in range(10)],
        image_size=image_size,
        max_train=max_train,
        max_test=max_test,
    )


# builder -> (module, the pip requirement that installs it); hf_vq depends on each, so only an install without
# dependencies (`pip install --no-deps`) lacks one
REQUIREMENTS = {"patches": ("skimage", "scikit-image")}


def check_requirements(name: str) -> None:
    """ModuleNotFoundError with the `pip install` line when builder `name` needs a package that is not installed."""
    module, requirement = REQUIREMENTS.get(name, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"offline dataset {name!r} is built from files that {requirement} ships, and "
                                  f"{requirement} is not installed: pip install {requirement}", name=module)


def _load_photo(name: str) -> np.ndarray:
    import skimage.data

    photo = getattr(skimage.data, name)()
    photo = photo[0] if name == "stereo_motorcycle" else photo  # (left, right, disparity)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is not an RGB uint8 photo: {photo.shape} {photo.dtype}")
    return photo


def patch_grid(height: int, width: int, stride: int, photo_index: int) -> list[tuple[int, int, str]]:
    """Top-left corners ``(y, x, split)`` of the ``PATCH_SIZE`` patches of one photo, split by spatial block.

    The photo is tiled into ``PATCH_BLOCK`` squares; a fixed-seed 10 % of them (at least one, drawn among the
    blocks lying wholly inside the photo, seeded by ``photo_index``) are test blocks. A patch is test (train) if
    every block it touches is test (train); a patch touching both is dropped. So no test pixel lies in any train
    patch, whatever the stride.
    """
    rows, cols = -(-height // PATCH_BLOCK), -(-width // PATCH_BLOCK)
    full = [r * cols + c for r in range(height // PATCH_BLOCK) for c in range(width // PATCH_BLOCK)]
    n_test = max(1, round(0.1 * rows * cols))
    test_blocks = set(np.random.default_rng([SEED, photo_index]).choice(full, size=n_test, replace=False).tolist())
    grid = []
    for y in range(0, height - PATCH_SIZE + 1, stride):
        for x in range(0, width - PATCH_SIZE + 1, stride):
            touched = {
                r * cols + c
                for r in {y // PATCH_BLOCK, (y + PATCH_SIZE - 1) // PATCH_BLOCK}
                for c in {x // PATCH_BLOCK, (x + PATCH_SIZE - 1) // PATCH_BLOCK}
            }
            in_test = touched & test_blocks
            if not in_test:
                grid.append((y, x, "train"))
            elif in_test == touched:
                grid.append((y, x, "test"))
    return grid


def build_patches(
    *,
    stride: int = PATCH_SIZE,
    image_size: int | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
) -> datasets.DatasetDict:
    """32x32 RGB patches of the ``PATCH_PHOTOS`` (scikit-image's bundled colour photos); label = photo name.

    Patches are cut every ``stride`` pixels (32: non-overlapping, 3,859 patches; 16: 14,251), flat ones
    (``PATCH_MIN_STD``) are dropped, and train/test are split by whole spatial blocks (``patch_grid``), so
    test patches never overlap train patches: stride 32 gives train 3,383 / test 476, stride 16 train
    12,764 / test 1,487.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    found = {"train": ([], []), "test": ([], [])}
    for index, name in enumerate(PATCH_PHOTOS):
        photo = _load_photo(name)
        for y, x, split in patch_grid(photo.shape[0], photo.shape[1], stride, index):
            patch = photo[y : y + PATCH_SIZE, x : x + PATCH_SIZE]
            if patch.reshape(-1, 3).std(axis=0).max() >= PATCH_MIN_STD:
                found[split][0].append(patch)
                found[split][1].append(index)
    splits = {split: (np.stack(images), np.array(labels)) for split, (images, labels) in found.items()}
    return _to_dataset_dict(splits, PATCH_PHOTOS, image_size=image_size, max_train=max_train, max_test=max_test)


BUILDERS: dict[str, Callable[..., datasets.DatasetDict]] = {
    "fashion_mnist": build_fashion_mnist,
    "digits": build_digits,
    "patches": build_patches,
}
"""Offline builder name -> function returning the DatasetDict in memory."""


def _read_build_record(path: Path) -> dict | None:
    """The build record of a complete build folder, or None if ``path`` is not one."""
    try:
        record = json.loads((path / BUILD_RECORD).read_text())
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError):
        return None
    if not isinstance(loaded, datasets.DatasetDict) or set(loaded) != {"train", "test"}:
        return None
    return record


def _fresh_sibling(path: Path, tag: str) -> Path:
    """Create and return an empty folder ``<path>.<tag>-<random hex>`` next to ``path``."""
    sibling = path.with_name(f"{path.name}.{tag}-{uuid.uuid4().hex[:8]}")
    sibling.mkdir()
    return sibling


def build_dataset(name: str, output_dir: str | Path, *, overwrite: bool = False, **options) -> Path:
    """Build offline dataset ``name`` (a key of ``BUILDERS``) into ``output_dir`` with ``save_to_disk``.

    ``options`` are the builder's keyword arguments (``image_size``, ``max_train``, ``max_test``, ``stride`` for
    patches, ``root`` for fashion_mnist). If ``output_dir`` already holds a complete build with the same options
    it is kept as is; with other options (or other content) a FileExistsError is raised unless ``overwrite``.
    The build goes to a ``<output_dir>.tmp-*`` folder renamed into place when complete. Returns ``output_dir``.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown offline dataset {name!r}; available: {', '.join(BUILDERS)}")
    builder = BUILDERS[name]
    check_requirements(name)
    try:
        bound = inspect.signature(builder).bind(**options)
    except TypeError as err:
        raise ValueError(f"offline dataset {name!r}: {err}") from None
    bound.apply_defaults()
    record = {"builder": name, "options": {k: str(v) if isinstance(v, Path) else v for k, v in bound.kwargs.items()}}

    out = Path(output_dir).expanduser().absolute()
    if out.exists() and not overwrite:
        existing = _read_build_record(out)
        if existing == record:
            logger.info("%s already holds %s %s; not rebuilt", out, name, record["options"])
            return out
        if existing is not None or any(out.iterdir()):
            raise FileExistsError(
                f"{out} already holds {existing or 'something that is not a complete hf_vq build'}, not {record}; "
                "pass overwrite=True (--overwrite) or choose another directory"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_sibling(out, "tmp")
    try:
        start = time.perf_counter()
        builder(**bound.kwargs).save_to_disk(str(tmp))
        (tmp / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if out.exists() and overwrite:
            old = _fresh_sibling(out, "old")
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            try:
                tmp.rename(out)  # fails if a concurrent build filled `out` meanwhile
            except OSError:
                if _read_build_record(out) != record:
                    raise
        logger.info("built %s %s into %s in %.1f s", name, record["options"], out, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_data_dir() -> Path:
    """Cache folder of ``offline:`` datasets: ``$HF_VQ_DATA_DIR``, else ``~/.cache/hf_vq/datasets``."""
    return Path(os.environ.get("HF_VQ_DATA_DIR", "~/.cache/hf_vq/datasets")).expanduser()
