"""Image datasets for hf_vq: offline builders, one loader for every source, and the torch-side transform.

Offline builders (no network; the data comes with installed packages) write a ``datasets.DatasetDict``
with splits ``"train"``/``"test"`` and features ``{"image": Image(), "label": ClassLabel(names=...)}``:

- ``fashion_mnist``: Fashion-MNIST, 60,000 train / 10,000 test 28x28 grey images, 10 classes, read from the
  IDX files of the Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
- ``digits``: scikit-learn's ``load_digits``, 1,797 8x8 grey images (16 levels scaled to 0..255), 10 classes,
  a fixed-seed 80/20 split.
- ``patches``: 32x32 RGB patches cut from the colour photos bundled with scikit-image; label = source photo.

Command line::

    python -m hf_vq.data list
    python -m hf_vq.data build patches --output data/patches [--stride 16] [--image-size 32]
        [--max-train N] [--max-test N] [--overwrite]

A build is written to ``DIR.tmp-*`` and renamed to ``DIR`` when complete, so ``DIR`` is either absent or a
complete dataset; a build killed hard leaves a ``DIR.tmp-*`` folder that is never read and can be deleted.
``DIR/hf_vq_build.json`` records the builder and its options; building again into a complete ``DIR`` with the
same options does nothing.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
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
"""Patches whose largest per-channel standard deviation (0..255 scale) is below this are flat background and dropped."""

OFFLINE_PREFIX = "offline:"


class HubUnavailableError(ConnectionError):
    """A Hub dataset id could not be loaded because the Hub is unreachable or offline mode is on."""


# --------------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------------


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
    """scikit-learn's handwritten digits: 1,797 8x8 grey images, 16 levels scaled to 0..255, classes "0".."9".

    The split is a fixed-seed permutation whose last 20 % is test: train 1,438 / test 359.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target
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


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------


def _offline_options_hint() -> str:
    return (
        "Offline sources: " + ", ".join(f"'{OFFLINE_PREFIX}{n}'" for n in BUILDERS)
        + " (built locally, see `python -m hf_vq.data list`), a local image folder (one subfolder of images per "
        "class), or a directory written by `save_to_disk`."
    )


def _load_source(source: str) -> datasets.Dataset | datasets.DatasetDict:
    if source.startswith(OFFLINE_PREFIX):
        name = source[len(OFFLINE_PREFIX) :]
        if name not in BUILDERS:
            raise ValueError(f"unknown offline dataset {name!r} in {source!r}; available: {', '.join(BUILDERS)}")
        return datasets.load_from_disk(str(build_dataset(name, default_data_dir() / name)))
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset("imagefolder", data_dir=str(path))
    if path.exists() or source.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"{source!r} is not a directory. {_offline_options_hint()}")
    try:
        return datasets.load_dataset(source)
    except ConnectionError as err:  # datasets wraps network failures and offline mode in it
        raise HubUnavailableError(
            f"Could not load dataset {source!r} from the Hugging Face Hub: it is unreachable or offline mode is on "
            f"(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) [{type(err).__name__}: {err}]. {_offline_options_hint()}"
        ) from None


def load_image_dataset(
    source: str | os.PathLike,
    *,
    image_column: str = "image",
    label_column: str | None = "label",
    train_split: str = "train",
    test_split: str | None = None,
    test_size: float = 0.1,
) -> datasets.DatasetDict:
    """Load an image dataset as a DatasetDict with splits "train" and "test" and columns "image" (+ "label").

    ``source`` is one of: a directory written by ``save_to_disk`` (Dataset or DatasetDict); a local image folder
    (``imagefolder``: one subfolder per class); ``"offline:NAME"`` for a ``BUILDERS`` name, built once into
    ``default_data_dir() / NAME``; or a Hub dataset id (HubUnavailableError, a ConnectionError, when the Hub
    cannot be reached). ``image_column`` (an ``Image`` feature) is renamed "image" and ``label_column`` (a
    ClassLabel or integer feature; None for none) "label"; other columns are dropped. The test split is
    ``test_split`` if given, else "test", else "validation", else a fixed-seed ``test_size`` share of train.
    Raises ValueError for a missing split or column and for an empty split.
    """
    source = os.fspath(source)
    loaded = _load_source(source)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({train_split: loaded})
    if train_split not in loaded:
        raise ValueError(f"{source!r} has no split {train_split!r}; its splits: {list(loaded)}")
    if test_split is not None and test_split not in loaded:
        raise ValueError(f"{source!r} has no split {test_split!r}; its splits: {list(loaded)}")
    test_name = test_split or next((s for s in ("test", "validation") if s in loaded), None)
    splits = {"train": loaded[train_split]} | ({"test": loaded[test_name]} if test_name else {})

    columns = {image_column: "image"} | ({label_column: "label"} if label_column is not None else {})
    for split, ds in splits.items():
        for column in columns:
            if column not in ds.column_names:
                raise ValueError(
                    f"{source!r} split {split!r} has no column {column!r}; its columns: {ds.column_names}"
                )
        if not isinstance(ds.features[image_column], datasets.Image):
            raise ValueError(f"{source!r} column {image_column!r} is {ds.features[image_column]}, not an Image")
        if label_column is not None:
            feature = ds.features[label_column]
            if not isinstance(feature, datasets.ClassLabel) and not (
                isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))
            ):
                raise ValueError(f"{source!r} column {label_column!r} is {feature}, not a ClassLabel or integer")
        if len(ds) == 0:
            raise ValueError(f"{source!r} split {split!r} is empty")
        splits[split] = ds.select_columns(list(columns)).rename_columns(
            {old: new for old, new in columns.items() if old != new}
        )
    if "test" not in splits:
        if len(splits["train"]) < 2:
            raise ValueError(f"{source!r} has no test split and too few examples ({len(splits['train'])}) to make one")
        splits = splits["train"].train_test_split(test_size=test_size, seed=SEED)
    return datasets.DatasetDict(splits)


# --------------------------------------------------------------------------------------------------------------
# Torch side
# --------------------------------------------------------------------------------------------------------------

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageTransform:
    """Batch transform for ``Dataset.with_transform``: PIL images -> normalised float tensors.

    Each image is converted to ``num_channels`` (1: PIL mode "L", 3: "RGB"; alpha is dropped), resized to
    ``image_size`` (int: square, or (height, width)) with PIL ``resample`` ("bicubic" or "bilinear",
    antialiased) when its size differs, scaled to [0, 1] and normalised: "minus_one_one" -> [-1, 1],
    "zero_one" -> [0, 1], or ``(mean, std)`` (scalars or one value per channel) -> (x - mean) / std.

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
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {list(_RESAMPLE)}, got {resample!r}")
        if isinstance(normalize, str):
            if normalize not in ("minus_one_one", "zero_one"):
                raise ValueError(f"normalize must be 'minus_one_one', 'zero_one' or (mean, std), got {normalize!r}")
            mean, std = (0.5, 0.5) if normalize == "minus_one_one" else (0.0, 1.0)
        else:
            mean, std = normalize
        self.size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.mode = "L" if num_channels == 1 else "RGB"
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        if {len(self.mean), len(self.std)} - {1, num_channels}:
            raise ValueError(f"mean and std need 1 or {num_channels} values, got {mean} and {std}")
        self.image_column = image_column
        self.label_column = label_column
        self.resample = _RESAMPLE[resample]

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> normalised (num_channels, H, W) float32 tensor."""
        image = image.convert(self.mode)
        height, width = self.size
        if image.size != (width, height):
            image = image.resize((width, height), self.resample)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
        pixels = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        return (pixels.float() / 255.0 - self.mean) / self.std

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = {"pixel_values": [self.to_tensor(image) for image in batch[self.image_column]]}
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


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hf_vq.data list`` | ``build NAME --output DIR [...]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hf_vq.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the offline builders")
    build = commands.add_parser("build", help="build an offline dataset with save_to_disk")
    build.add_argument("name", choices=list(BUILDERS))
    build.add_argument("--output", required=True, type=Path, help="dataset directory to create")
    build.add_argument("--stride", type=int, help=f"patches only: pixels between patches (default {PATCH_SIZE})")
    build.add_argument("--image-size", type=int, help="resize images to this square size (default: keep)")
    build.add_argument("--max-train", type=int, help="keep a fixed-seed subset of this many train examples")
    build.add_argument("--max-test", type=int, help="keep a fixed-seed subset of this many test examples")
    build.add_argument("--overwrite", action="store_true", help="replace a different existing build")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, builder in BUILDERS.items():
            print(f"{name:14s} {inspect.getdoc(builder).splitlines()[0]}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = {
        key: value
        for key, value in (
            ("stride", args.stride), ("image_size", args.image_size),
            ("max_train", args.max_train), ("max_test", args.max_test),
        )
        if value is not None
    }
    start = time.perf_counter()
    try:
        out = build_dataset(args.name, args.output, overwrite=args.overwrite, **options)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        parser.exit(2, f"error: {err}\n")
    ds = datasets.load_from_disk(str(out))
    sizes = ", ".join(f"{split} {len(ds[split])}" for split in ds)
    print(f"{args.name}: {sizes} in {out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
