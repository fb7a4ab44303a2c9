"""hf_vq.data.transforms: the training transform is the saved image processor; collate_fn."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq import VQVAEConfig
from hf_vq.data import ImageTransform, build_digits, build_patches, collate_fn, load_image_dataset
from hf_vq.training.config import DataConfig
from hf_vq.training.data import prepare_data


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


@pytest.mark.parametrize(
    "num_channels,normalize,resample",
    [(3, "minus_one_one", "bicubic"), (1, "zero_one", "bilinear"), (3, "imagenet", "bilinear")],
)
def test_the_training_transform_is_the_saved_image_processor(tmp_path, num_channels, normalize, resample):
    """What a model sees in training equals, bit for bit, what `AutoImageProcessor.from_pretrained(<run folder>)`
    makes of the same PIL images at inference, images that need resizing included."""
    from transformers import AutoImageProcessor

    rng, mode = np.random.default_rng(0), "L" if num_channels == 1 else "RGB"
    (tmp_path / "images" / "a").mkdir(parents=True)
    for i, (height, width) in enumerate([(16, 16), (16, 16), (23, 17), (9, 30), (16, 16), (40, 40)] * 2):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(tmp_path / "images" / "a" / f"{i}.png")
    data = prepare_data(DataConfig(source=str(tmp_path / "images"), label_column=None, resize=True,
                                   normalize=normalize, resample=resample),
                        image_size=16, num_channels=num_channels, need_labels=False)
    trained_on = torch.stack([data.train[i]["pixel_values"] for i in range(len(data.train))])

    data.processor.save_pretrained(tmp_path / "run")  # what a training run saves with its model,
    VQVAEConfig(num_channels=num_channels).save_pretrained(tmp_path / "run")  # whose config names the processor
    processor = AutoImageProcessor.from_pretrained(tmp_path / "run")
    images = list(load_image_dataset(tmp_path / "images", label_column=None)["train"]["image"])
    assert {image.size for image in images} > {(16, 16)} and {image.mode for image in images} == {mode}
    inference = processor(images=images, return_tensors="pt")["pixel_values"]
    assert trained_on.shape == (len(images), num_channels, 16, 16) and trained_on.dtype == torch.float32
    assert torch.equal(trained_on, inference)
