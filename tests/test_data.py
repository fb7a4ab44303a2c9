"""Tests of hf_vq.data: offline builders, atomic builds, load_image_dataset, ImageTransform and collate_fn."""

import functools

import datasets
import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq import data
from hf_vq.data import (
    BUILDERS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    PATCH_PHOTOS,
    PATCH_SIZE,
    HubUnavailableError,
    ImageTransform,
    build_dataset,
    build_digits,
    build_fashion_mnist,
    build_patches,
    collate_fn,
    load_image_dataset,
    main,
    patch_grid,
)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Keep datasets' cache and the offline-build cache inside tmp_path."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets-cache"))
    monkeypatch.setenv("HF_VQ_DATA_DIR", str(tmp_path / "hf-vq-data"))


def assert_image_dataset(dd, *, size, mode, class_names, n_train=None, n_test=None):
    assert set(dd) == {"train", "test"}
    for split, n in (("train", n_train), ("test", n_test)):
        ds = dd[split]
        assert isinstance(ds.features["image"], datasets.Image)
        assert ds.features["label"] == datasets.ClassLabel(names=list(class_names))
        if n is not None:
            assert len(ds) == n
        for example in ds.select(range(min(len(ds), 8))):
            assert example["image"].mode == mode and example["image"].size == (size, size)
            pixels = np.asarray(example["image"])
            assert pixels.dtype == np.uint8
            assert 0 <= example["label"] < len(class_names)


# ---------------------------------------------------------------------------------------------------- builders


def test_digits_builder():
    dd = build_digits()
    assert_image_dataset(dd, size=8, mode="L", class_names=[str(d) for d in range(10)], n_train=1438, n_test=359)
    pixels = np.stack([np.asarray(im) for im in dd["train"]["image"]])
    assert pixels.min() == 0 and pixels.max() == 255
    assert set(np.unique(pixels)) <= {round(v * 255 / 16) for v in range(17)}
    small = build_digits(max_train=64, max_test=16, image_size=16)
    assert_image_dataset(small, size=16, mode="L", class_names=[str(d) for d in range(10)], n_train=64, n_test=16)
    assert build_digits(max_train=64, max_test=16, image_size=16)["train"]["label"] == small["train"]["label"]


@pytest.fixture
def fashion_root():
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(
            f"Fashion-MNIST files missing from {FASHION_MNIST_DIR}: run `apt-get install dataset-fashion-mnist`"
        )
    return FASHION_MNIST_DIR


def test_fashion_mnist_builder(fashion_root):
    assert data._read_idx(fashion_root / "train-images-idx3-ubyte.gz").shape == (60000, 28, 28)
    assert data._read_idx(fashion_root / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
    dd = build_fashion_mnist(max_train=64, max_test=32)
    assert_image_dataset(dd, size=28, mode="L", class_names=FASHION_MNIST_CLASSES, n_train=64, n_test=32)
    assert len(set(dd["train"]["label"])) > 5
    assert max(np.asarray(im).max() for im in dd["train"]["image"]) == 255
    resized = build_fashion_mnist(max_train=8, max_test=8, image_size=32)
    assert_image_dataset(resized, size=32, mode="L", class_names=FASHION_MNIST_CLASSES, n_train=8, n_test=8)


def test_fashion_mnist_missing_files_names_the_apt_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_fashion_mnist(root=tmp_path)


def test_patches_builder():
    dd = build_patches(max_train=64, max_test=16)
    assert_image_dataset(dd, size=PATCH_SIZE, mode="RGB", class_names=PATCH_PHOTOS, n_train=64, n_test=16)
    assert len(set(dd["train"]["label"])) > 3
    resized = build_patches(max_train=4, max_test=4, image_size=16)
    assert_image_dataset(resized, size=16, mode="RGB", class_names=PATCH_PHOTOS, n_train=4, n_test=4)
    with pytest.raises(ValueError, match="stride"):
        build_patches(stride=0)


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_patch_split_has_no_spatial_overlap(stride):
    n_train = n_test = 0
    for index, name in enumerate(PATCH_PHOTOS):
        height, width = data._load_photo(name).shape[:2]
        covered = {"train": np.zeros((height, width), bool), "test": np.zeros((height, width), bool)}
        grid = patch_grid(height, width, stride, index)
        for y, x, split in grid:
            covered[split][y : y + PATCH_SIZE, x : x + PATCH_SIZE] = True
        assert not (covered["train"] & covered["test"]).any(), name
        assert covered["test"].any(), name
        assert all(y % stride == 0 and x % stride == 0 for y, x, _ in grid)
        assert patch_grid(height, width, stride, index) == grid
        n_test += sum(split == "test" for *_, split in grid)
        n_train += sum(split == "train" for *_, split in grid)
    assert 0.05 < n_test / (n_train + n_test) < 0.2


# ------------------------------------------------------------------------------------------- atomic builds


def failing_after_build(builder):
    @functools.wraps(builder)
    def wrapper(**kwargs):
        builder(**kwargs)
        raise RuntimeError("simulated crash")

    return wrapper


def test_build_is_idempotent_and_atomic(tmp_path, monkeypatch):
    out = tmp_path / "digits"
    stale = tmp_path / "digits.tmp-stale"
    stale.mkdir()
    (stale / "dataset_dict.json").write_text('{"splits": ["train"]}')

    assert build_dataset("digits", out, max_train=32, max_test=8) == out
    loaded = datasets.load_from_disk(str(out))
    assert (len(loaded["train"]), len(loaded["test"])) == (32, 8)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("digits")) == ["digits", stale.name]

    # Same options: kept, the builder is not even called.
    monkeypatch.setitem(BUILDERS, "digits", failing_after_build(build_digits))
    assert build_dataset("digits", out, max_train=32, max_test=8) == out
    # Other options: refused unless overwrite; a crash while overwriting keeps the old build and no tmp folder.
    with pytest.raises(FileExistsError, match="overwrite"):
        build_dataset("digits", out, max_train=16, max_test=8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset("digits", out, max_train=16, max_test=8, overwrite=True)
    assert len(datasets.load_from_disk(str(out))["train"]) == 32
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset("digits", tmp_path / "new", max_train=16, max_test=8)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("digits", "new"))) == [
        "digits",
        stale.name,
    ]

    monkeypatch.setitem(BUILDERS, "digits", build_digits)
    build_dataset("digits", out, max_train=16, max_test=8, overwrite=True)
    assert len(datasets.load_from_disk(str(out))["train"]) == 16
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("digits")) == ["digits", stale.name]


def test_build_refuses_foreign_content_and_bad_options(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete hf_vq build"):
        build_dataset("digits", tmp_path / "busy", max_train=8, max_test=8)
    with pytest.raises(ValueError, match="stride"):
        build_dataset("digits", tmp_path / "d", stride=16)
    with pytest.raises(ValueError, match="available: fashion_mnist, digits, patches"):
        build_dataset("cifar", tmp_path / "c")


def test_cli(tmp_path, capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in BUILDERS)
    out = tmp_path / "cli"
    assert main(["build", "digits", "--output", str(out), "--max-train", "16", "--max-test", "8"]) == 0
    assert "train 16, test 8" in capsys.readouterr().out
    assert main(["build", "digits", "--output", str(out), "--max-train", "16", "--max-test", "8"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "digits", "--output", str(tmp_path / "x"), "--stride", "16"])
    assert exit_info.value.code == 2 and "stride" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- loading


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
    assert (tmp_path / "hf-vq-data" / "digits" / data.BUILD_RECORD).is_file()
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


# -------------------------------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("source_mode", ["L", "RGB"])
@pytest.mark.parametrize("num_channels", [1, 3])
def test_transform_and_collate_shapes_dtypes_ranges(source_mode, num_channels):
    dd = build_digits(max_train=8, max_test=4) if source_mode == "L" else build_patches(max_train=8, max_test=4)
    ds = dd["train"].with_transform(ImageTransform(16, num_channels))
    example = ds[0]
    assert example["pixel_values"].shape == (num_channels, 16, 16)
    assert example["pixel_values"].dtype == torch.float32
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_fn)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, num_channels, 16, 16)
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].shape == (4,) and batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == dd["train"]["label"][:4]
    values = batch["pixel_values"]
    assert values.min() >= -1 and values.max() <= 1 and values.min() < 0 < values.max()


def test_transform_normalizations_are_exact():
    image = Image.new("RGB", (4, 6), (0, 51, 255))
    batch = {"image": [image], "label": [3]}
    minus_one_one = ImageTransform((6, 4))(batch)
    assert minus_one_one["labels"] == [3]
    assert torch.allclose(minus_one_one["pixel_values"][0][:, 0, 0], torch.tensor([-1.0, -0.6, 1.0]))
    zero_one = ImageTransform((6, 4), normalize="zero_one")(batch)["pixel_values"][0]
    assert torch.allclose(zero_one[:, 2, 3], torch.tensor([0.0, 0.2, 1.0]))
    mean, std = (0.5, 0.4, 0.3), (0.5, 0.2, 0.1)
    standard = ImageTransform((6, 4), normalize=(mean, std))(batch)["pixel_values"][0]
    assert torch.allclose(standard[:, 5, 1], (torch.tensor([0.0, 0.2, 1.0]) - torch.tensor(mean)) / torch.tensor(std))
    grey = ImageTransform(8, 1, normalize="zero_one")({"image": [image]})
    assert set(grey) == {"pixel_values"} and grey["pixel_values"][0].shape == (1, 8, 8)
    unlabeled = collate_fn([{"pixel_values": torch.zeros(1, 2, 2)}] * 3)
    assert set(unlabeled) == {"pixel_values"} and unlabeled["pixel_values"].shape == (3, 1, 2, 2)
    with pytest.raises(ValueError, match="num_channels"):
        ImageTransform(8, 2)
    with pytest.raises(ValueError, match="normalize"):
        ImageTransform(8, normalize="imagenet")
    with pytest.raises(ValueError, match="1 or 1 values"):
        ImageTransform(8, 1, normalize=(mean, std))
