"""hf_vq.data.loading: one loader for save_to_disk folders, image folders, offline builds and Hub ids."""

import datasets
import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from hf_vq.data import BUILD_RECORD, HubUnavailableError, build_digits, load_image_dataset

from . import assert_image_dataset


def test_load_save_to_disk_dataset_dict(tmp_path):
    path = tmp_path / "saved"
    build_digits(max_train=40, max_test=10).save_to_disk(str(path))
    dd = load_image_dataset(path)
    assert_image_dataset(dd, size=8, mode="L", class_names=[str(d) for d in range(10)], n_train=40, n_test=10)


def test_load_save_to_disk_dataset_makes_a_deterministic_test_split(tmp_path):
    path = tmp_path / "saved"
    build_digits(max_train=50, max_test=1)["train"].save_to_disk(str(path))
    first, second = load_image_dataset(path), load_image_dataset(str(path))
    assert (len(first["train"]), len(first["test"])) == (45, 5)
    assert first["test"]["label"] == second["test"]["label"]


def test_load_renames_columns_and_uses_validation(tmp_path):
    split = build_digits(max_train=12, max_test=1)["train"]
    split = split.rename_columns({"image": "img", "label": "fine_label"}).add_column("extra", list(range(12)))
    path = tmp_path / "renamed"
    datasets.DatasetDict({"train": split, "validation": split.select(range(4))}).save_to_disk(str(path))
    dd = load_image_dataset(path, image_column="img", label_column="fine_label")
    assert dd["train"].column_names == ["image", "label"] and len(dd["test"]) == 4
    unlabeled = load_image_dataset(path, image_column="img", label_column=None)
    assert unlabeled["test"].column_names == ["image"]
    with pytest.raises(ValueError, match=r"no split 'test'.*'train', 'validation'"):
        load_image_dataset(path, image_column="img", label_column="fine_label", test_split="test")


def test_load_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "folder" / name / f"{i}.png")
    dd = load_image_dataset(tmp_path / "folder")
    assert (len(dd["train"]), len(dd["test"])) == (9, 1)
    assert dd["train"].features["label"].names == ["cat", "dog"]
    assert dd["train"][0]["image"].size == (10, 12)


def test_load_offline_builder_into_cache_dir(tmp_path):
    dd = load_image_dataset("offline:digits")
    assert (len(dd["train"]), len(dd["test"])) == (1438, 359)
    assert (tmp_path / "hf-vq-data" / "digits" / BUILD_RECORD).is_file()
    assert load_image_dataset("offline:digits")["test"]["label"] == dd["test"]["label"]
    with pytest.raises(ValueError, match="unknown offline dataset 'cifar'"):
        load_image_dataset("offline:cifar")


def test_unreachable_hub_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both libraries read these variables at import; set their constants too so nothing touches the network.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnavailableError) as error:
        load_image_dataset("hf-vq-tests/no-such-dataset")
    message = str(error.value)
    assert isinstance(error.value, ConnectionError)
    assert "'hf-vq-tests/no-such-dataset'" in message
    for option in ("offline:patches", "offline:fashion_mnist", "offline:digits", "image folder", "save_to_disk"):
        assert option in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="offline:patches"):
        load_image_dataset(tmp_path / "absent")


def test_missing_column_and_empty_split_errors(tmp_path):
    path = tmp_path / "saved"
    build_digits(max_train=8, max_test=4).save_to_disk(str(path))
    with pytest.raises(ValueError, match=r"no column 'pixels'.*\['image', 'label'\]"):
        load_image_dataset(path, image_column="pixels")
    with pytest.raises(ValueError, match=r"no column 'fine_label'.*\['image', 'label'\]"):
        load_image_dataset(path, label_column="fine_label")
    with pytest.raises(ValueError, match="'label' is .*not an Image"):
        load_image_dataset(path, image_column="label", label_column=None)

    empty = tmp_path / "empty"
    dd = build_digits(max_train=8, max_test=4)
    # num_shards: datasets 5.2 writes an empty split with no shard at all, which load_from_disk cannot read.
    empty_dd = datasets.DatasetDict({"train": dd["train"], "test": dd["test"].select([])})
    empty_dd.save_to_disk(str(empty), num_shards={"train": 1, "test": 1})
    with pytest.raises(ValueError, match="split 'test' is empty"):
        load_image_dataset(empty)
