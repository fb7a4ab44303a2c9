"""Datasets and data loaders for the training loop, checked before any training starts.

`prepare_data` loads the configured source through `hf_vq.data.load_image_dataset` and turns every problem a
run would otherwise hit minutes in (a missing column, an empty split, images of another size than the model
expects, a Hub id without network) into a `ConfigError` that names the setting to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import torch

from ..data import NORMALIZATIONS, HubUnavailableError, ImageTransform, collate_fn, load_image_dataset
from .config import ConfigError, DataConfig

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def normalization(name: str, num_channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel of a `data.normalize` name; pixels are (x/255 − mean) / std."""
    if name != "imagenet":
        mean, std = NORMALIZATIONS[name]
        return [mean] * num_channels, [std] * num_channels
    if num_channels != 3:
        raise ConfigError(f"data.normalize 'imagenet' needs 3 channels, but model.num_channels={num_channels}")
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


@dataclass
class PreparedData:
    """Train/test datasets of {"pixel_values", "labels"?} examples, and how their pixels were normalised."""

    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    class_names: list[str] | None
    mean: list[float]
    std: list[float]
    # batches of train indices; None: shuffled each epoch by Accelerate's seedable sampler (resumable)
    batch_sampler: torch.utils.data.Sampler | None = None
    # the image processor the transform applies, saved with the model; None: built from the fields above
    processor: Any = None
    # what a run reports about its data: {"test_split": where it comes from, "image_conversion": ...}
    facts: dict = field(default_factory=dict)


def _num_classes(ds: datasets.Dataset) -> list[str]:
    feature = ds.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    labels = ds.unique("label")
    if min(labels) < 0:
        raise ConfigError(f"data.label_column holds negative labels ({min(labels)}); class indices must be >= 0")
    return [str(i) for i in range(max(labels) + 1)]


def _subset(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    if limit is None or limit >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(limit)).flatten_indices()


def prepare_data(
    cfg: DataConfig, *, image_size: int, num_channels: int, need_labels: bool, seed: int = 0
) -> PreparedData:
    """Train/test datasets with the torch transform attached, after the checks that stop a bad run early.

    Raises ConfigError for: a source that cannot be loaded (naming data.source and the offline options),
    a missing split or column, an empty split, images whose size differs from `image_size` while
    data.resize is false, and labels missing when the task needs them."""
    label_column = cfg.label_column if need_labels else None
    if need_labels and cfg.label_column is None:
        raise ConfigError("this task trains a classifier: data.label_column must name the label column, not null")
    try:
        dsd = load_image_dataset(
            cfg.source, image_column=cfg.image_column, label_column=label_column,
            train_split=cfg.train_split, test_split=cfg.test_split,
        )
    except (HubUnavailableError, ModuleNotFoundError) as err:  # the message says what to do
        raise ConfigError(f"data.source {cfg.source!r}: {err}") from None
    except (ValueError, FileNotFoundError, ConnectionError) as err:
        raise ConfigError(f"data.source {cfg.source!r}: {err} (data.image_column={cfg.image_column!r}, "
                          f"data.label_column={label_column!r}, data.train_split={cfg.train_split!r}, "
                          f"data.test_split={cfg.test_split!r})") from None
    except Exception as err:  # anything else the loaders raise: still stop here, naming the setting
        raise ConfigError(f"data.source {cfg.source!r} could not be loaded: {type(err).__name__}: {err}") from err
    train = _subset(dsd["train"], cfg.max_train_samples, seed)
    test = _subset(dsd["test"], cfg.max_test_samples, seed)
    for split, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise ConfigError(f"data.source {cfg.source!r}: the {split} split is empty")

    if not cfg.resize:
        for split, ds in (("train", train), ("test", test)):
            width, height = ds[0]["image"].size
            if (height, width) != (image_size, image_size):
                raise ConfigError(
                    f"data.source {cfg.source!r}: {split} images are {height}×{width} but model.image_size is "
                    f"{image_size}; set --image_size {height} if the model allows it, or --data.resize true to resize "
                    f"every image to {image_size}×{image_size}"
                )

    class_names = _num_classes(train) if need_labels else None
    mean, std = normalization(cfg.normalize, num_channels)
    transform = ImageTransform(image_size, num_channels, normalize=(mean, std), resample=cfg.resample)
    facts = {"train_split": f"{cfg.source!r} split {cfg.train_split!r}",
             "test_split": getattr(dsd, "test_origin", f"{cfg.source!r} split 'test'")}
    modes = sorted({train[0]["image"].mode, test[0]["image"].mode} - {transform.mode})
    if modes:  # the first image of each split stands for the split
        facts["image_conversion"] = (f"images converted from PIL mode {'/'.join(modes)} to {transform.mode} "
                                     f"(model.num_channels={num_channels})")
    if len(train) < len(dsd["train"]) or len(test) < len(dsd["test"]):
        facts["subsets"] = (f"fixed-seed subsets: {len(train)} train / {len(test)} test examples "
                            "(data.max_train_samples / data.max_test_samples)")
    return PreparedData(train.with_transform(transform), test.with_transform(transform), class_names, mean, std,
                        processor=transform.processor, facts=facts)


def make_loaders(data: PreparedData, *, batch_size: int, eval_batch_size: int, num_workers: int) -> tuple:
    """(train loader: `data.batch_sampler`'s batches, or shuffled, keeping the last partial batch; test loader,
    in order)."""
    if data.batch_sampler is not None:
        batching = {"batch_sampler": data.batch_sampler}
    else:
        batching = {"batch_size": batch_size, "shuffle": True}
    train = torch.utils.data.DataLoader(data.train, collate_fn=collate_fn, num_workers=num_workers, **batching)
    test = torch.utils.data.DataLoader(
        data.test, batch_size=eval_batch_size, shuffle=False, collate_fn=collate_fn, num_workers=num_workers,
    )
    return train, test


__all__ = ["PreparedData", "make_loaders", "normalization", "prepare_data"]
