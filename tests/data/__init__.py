import datasets
import numpy as np


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
