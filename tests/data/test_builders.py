"""hf_vq.data.builders and the command line: the offline builders, atomic builds."""

import functools

import datasets
import numpy as np
import pytest

from hf_vq.data import (
    BUILDERS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    PATCH_PHOTOS,
    PATCH_SIZE,
    build_dataset,
    build_digits,
    build_fashion_mnist,
    build_patches,
    builders,
    main,
    patch_grid,
)

from . import assert_image_dataset


def test_digits_builder():
    dd = build_digits()
    assert_image_dataset(dd, size=8, mode="L", class_names=[str(d) for d in range(10)], n_train=1438, n_test=359)
    pixels = np.stack([np.asarray(im) for im in dd["train"]["image"]])
    assert pixels.min() == 0 and pixels.max() == 255
    assert set(np.unique(pixels)) <= {round(v * 255 / 16) for v in range(17)}
    small = build_digits(max_train=64, max_test=16, image_size=16)
    assert_image_dataset(small, size=16, mode="L", class_names=[str(d) for d in range(10)], n_train=64, n_test=16)
    assert build_digits(max_train=64, max_test=16, image_size=16)["train"]["label"] == small["train"]["label"]


def test_shipped_digits_are_scikit_learns():
    """files/digits.npz holds load_digits' arrays unchanged, so offline:digits needs no scikit-learn."""
    from sklearn.datasets import load_digits

    reference = load_digits()
    with np.load(builders.DIGITS_FILE, allow_pickle=False) as shipped:
        np.testing.assert_array_equal(shipped["images"], reference.images)
        np.testing.assert_array_equal(shipped["labels"], reference.target)


def test_a_missing_requirement_stops_the_build_with_the_pip_line(tmp_path, monkeypatch):
    find_spec = builders.importlib.util.find_spec
    monkeypatch.setattr(builders.importlib.util, "find_spec",
                        lambda name: None if name == "skimage" else find_spec(name))
    with pytest.raises(ModuleNotFoundError, match="scikit-image is not installed: pip install scikit-image"):
        build_dataset("patches", tmp_path / "patches")
    assert not (tmp_path / "patches").exists()
    build_dataset("digits", tmp_path / "digits", max_train=4, max_test=2)  # needs nothing


@pytest.fixture
def fashion_root():
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(
            f"Fashion-MNIST files missing from {FASHION_MNIST_DIR}: run `apt-get install dataset-fashion-mnist`"
        )
    return FASHION_MNIST_DIR


def test_fashion_mnist_builder(fashion_root):
    assert builders._read_idx(fashion_root / "train-images-idx3-ubyte.gz").shape == (60000, 28, 28)
    assert builders._read_idx(fashion_root / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
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
        height, width = builders._load_photo(name).shape[:2]
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
