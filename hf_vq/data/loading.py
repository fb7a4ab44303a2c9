"""One loader for every image source: a `save_to_disk` folder, an image folder, an offline build
(``offline:NAME``, see `builders.py`) or a Hub dataset id, as a DatasetDict of "train" and "test"."""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from .builders import BUILDERS, SEED, build_dataset, default_data_dir

OFFLINE_PREFIX = "offline:"


class HubUnavailableError(ConnectionError):
    """A Hub dataset id could not be loaded because the Hub is unreachable or offline mode is on."""


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
    ``test_split`` if given, else "test", else "validation", else a fixed-seed ``test_size`` share of train;
    the returned DatasetDict's ``test_origin`` attribute says which, in words (run facts, model cards).
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
        test_origin = (f"a fixed-seed {test_size:.0%} of {source!r} split {train_split!r}, held out from training "
                       "(the source has no test split)")
    else:
        test_origin = f"{source!r} split {test_name!r}"
    result = datasets.DatasetDict(splits)
    result.test_origin = test_origin
    return result
