"""Every model the training scripts produce, 1- or 3-channel, works from its saved folder with transformers'
pipeline / Auto classes and `VQImageProcessor`, on RGB and greyscale PIL images, here and as remote code in a
process that cannot import hf_vq; the processor converts channels as PIL does; half precision keeps the quantizer
in fp32."""

import builtins
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

from hf_vq import VQImageProcessor, VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification

from . import single_threaded  # noqa: F401  (autouse fixture)
from .test_model_cards import BLOCKER

VIT = dict(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=32, quantizer={"codebook_size": 8})
VAE = dict(image_size=16, block_out_channels=[16, 16], layers_per_block=1, latent_channels=8, norm_num_groups=8,
           mid_block_add_attention=False, quantizer={"codebook_size": 8})
LABELS = {0: "zero", 1: "one", 2: "two"}


def photo(seed=0, size=(21, 13)):
    """An RGB PIL image of another size than the models' (so the processor resizes)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def expected_pixels(image: Image.Image, num_channels: int) -> torch.Tensor:
    """Reference preprocessing by hand: PIL's own mode conversion and bicubic resize, then (x/255 − 0.5)/0.5."""
    image = image.convert("L" if num_channels == 1 else "RGB").resize((16, 16), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32).reshape(16, 16, num_channels).transpose(2, 0, 1)
    return torch.from_numpy((array / 255 - 0.5) / 0.5)[None]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Saved model + processor folders, as a training run writes them: vit-1, vit-3, vae-1, vae-3."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for channels in (1, 3):
        vit = VQViTForImageClassification(VQViTConfig(**VIT, num_channels=channels, id2label=LABELS,
                                                      label2id={v: k for k, v in LABELS.items()}))
        vae = VQVAEModel(VQVAEConfig(**VAE, num_channels=channels))
        for name, model in ((f"vit-{channels}", vit), (f"vae-{channels}", vae)):
            model.eval().save_pretrained(root / name)
            VQImageProcessor(size={"height": 16, "width": 16}, num_channels=channels).save_pretrained(root / name)
    return root


# ------------------------------------------------------------------------------------------------- processor


@pytest.mark.parametrize("num_channels", [1, 3])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_processor_converts_to_the_models_channels_as_pil_does(num_channels, mode):
    image = photo().convert(mode)
    pixels = VQImageProcessor(size={"height": 16, "width": 16}, num_channels=num_channels)(
        images=image, return_tensors="pt").pixel_values
    assert torch.allclose(pixels, expected_pixels(image, num_channels), atol=1e-6)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first", "torch"])
def test_array_inputs_get_the_same_conversion_as_pil_images(layout):
    image = photo(size=(16, 16))
    array = np.asarray(image)
    given = {"channels_last": array, "channels_first": array.transpose(2, 0, 1),
             "torch": torch.from_numpy(array.transpose(2, 0, 1).copy())}[layout]
    processor = VQImageProcessor(size={"height": 16, "width": 16}, num_channels=1)
    from_array = processor(images=given, return_tensors="pt").pixel_values
    from_pil = processor(images=image, return_tensors="pt").pixel_values
    # uint8 luma rounds as PIL's integer formula does, except at exact .5 ties: at most one grey level apart
    assert from_array.shape == (1, 1, 16, 16) and (from_array - from_pil).abs().max() <= 2 / 255 + 1e-6


def test_processor_settings_are_checked():
    with pytest.raises(ValueError, match="num_channels must be 1"):
        VQImageProcessor(num_channels=2)
    with pytest.raises(ValueError, match="image_mean has 3 values but num_channels=1"):
        VQImageProcessor(num_channels=1, image_mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="image_std has 1 values but num_channels=3"):
        VQImageProcessor()(images=photo(), image_std=[0.5])


@pytest.mark.parametrize("num_channels", [1, 3])
def test_postprocess_inverts_the_processor(num_channels):
    image = photo(size=(16, 16)).convert("L" if num_channels == 1 else "RGB")
    processor = VQImageProcessor(size={"height": 16, "width": 16}, num_channels=num_channels,
                                 image_mean=[0.2] * num_channels, image_std=[0.3] * num_channels)
    [back] = processor.postprocess(processor(images=image, return_tensors="pt").pixel_values)
    assert back.mode == image.mode and np.array_equal(np.asarray(back), np.asarray(image))


# ---------------------------------------------------------------------------------------- pipeline and Auto


@pytest.mark.parametrize("channels", [1, 3])
def test_pipeline_classifies_rgb_and_greyscale_images(folders, channels, monkeypatch):
    # transformers asks on stdin before running custom code; with hf_vq installed nothing may ask
    monkeypatch.setattr(builtins, "input", lambda *a: pytest.fail("transformers asked to trust remote code"))
    folder = folders / f"vit-{channels}"
    classify = pipeline("image-classification", model=str(folder), device="cpu")
    assert type(classify.image_processor) is VQImageProcessor and classify.image_processor.num_channels == channels
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    for image in (photo(1), photo(2).convert("L")):
        result = classify(image, top_k=3)
        with torch.no_grad():
            probs = model(expected_pixels(image, channels)).logits.softmax(-1)[0]
        assert [r["label"] for r in result] == [LABELS[int(i)] for i in probs.argsort(descending=True)]
        assert np.allclose([r["score"] for r in result], probs.sort(descending=True).values, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_vae_round_trip_through_the_auto_classes(folders, channels):
    folder = folders / f"vae-{channels}"
    processor, model = AutoImageProcessor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    assert type(processor) is VQImageProcessor and type(model) is VQVAEModel
    for image in (photo(3), photo(4).convert("L")):
        inputs = processor(images=image, return_tensors="pt")
        assert torch.allclose(inputs.pixel_values, expected_pixels(image, channels), atol=1e-6)
        with torch.no_grad():
            reconstruction = model.decode(model.encode(**inputs).codebook_indices)
            assert torch.equal(reconstruction, model(**inputs).reconstruction)
        [out] = processor.postprocess(reconstruction)
        assert out.size == (16, 16) and out.mode == ("L" if channels == 1 else "RGB")


def test_folders_name_the_processor_only_in_the_model_config(folders):
    """preprocessor_config.json names no class: with one, transformers' pipelines also look for a "video
    processor" of that name and ask to trust custom code. config.json's auto_map names it instead."""
    for name in ("vit-1", "vae-3"):
        processor_config = json.loads((folders / name / "preprocessor_config.json").read_text())
        assert "image_processor_type" not in processor_config and "auto_map" not in processor_config
        auto_map = json.loads((folders / name / "config.json").read_text())["auto_map"]
        assert auto_map["AutoImageProcessor"] == "image_processing_vq.VQImageProcessor"
        assert (folders / name / "image_processing_vq.py").is_file()


# -------------------------------------------------------------------------------------------- remote code

CHILD = BLOCKER + textwrap.dedent(
    """
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoImageProcessor, AutoModel, pipeline

    root, out_file = sys.argv[1:3]
    images = {"rgb": Image.open(f"{root}/rgb.png"), "grey": Image.open(f"{root}/grey.png")}
    out = {}
    for channels in (1, 3):
        classify = pipeline("image-classification", model=f"{root}/vit-{channels}", trust_remote_code=True)
        for kind, image in images.items():
            result = classify(image, top_k=3)
            out[f"vit-{channels}-{kind}"] = torch.tensor([[int(r["label"] == "two") for r in result],
                                                          [r["score"] for r in result]])
        processor = AutoImageProcessor.from_pretrained(f"{root}/vae-{channels}", trust_remote_code=True)
        vae = AutoModel.from_pretrained(f"{root}/vae-{channels}", trust_remote_code=True).eval()
        for kind, image in images.items():
            with torch.no_grad():
                out[f"vae-{channels}-{kind}"] = vae(**processor(images=image, return_tensors="pt")).reconstruction
    save_file({k: v.contiguous() for k, v in out.items()}, out_file)
    """
)


def test_remote_code_pipeline_and_round_trip_without_hf_vq(folders, tmp_path):
    images = {"rgb": photo(5), "grey": photo(6).convert("L")}
    for kind, image in images.items():
        image.save(folders / f"{kind}.png")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               OMP_NUM_THREADS="1", HF_VQ_DISABLE_NATIVE="1")
    process = subprocess.run([sys.executable, "-I", "-c", CHILD, str(folders), str(tmp_path / "out.safetensors")],
                             cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, process.stderr[-4000:]
    got = load_file(tmp_path / "out.safetensors")
    for channels in (1, 3):
        vit = VQViTForImageClassification.from_pretrained(folders / f"vit-{channels}").eval()
        vae = VQVAEModel.from_pretrained(folders / f"vae-{channels}").eval()
        for kind, image in images.items():
            with torch.no_grad():
                probs = vit(expected_pixels(image, channels)).logits.softmax(-1)[0]
                reconstruction = vae(expected_pixels(image, channels)).reconstruction
            order = probs.argsort(descending=True)
            assert got[f"vit-{channels}-{kind}"][0].tolist() == [float(i == 2) for i in order.tolist()]
            assert torch.allclose(got[f"vit-{channels}-{kind}"][1], probs[order], atol=1e-5)
            assert torch.allclose(got[f"vae-{channels}-{kind}"], reconstruction, atol=1e-5)


# ------------------------------------------------------------------------------------------ half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("build", ["from_config", "from_pretrained"])
@pytest.mark.parametrize("model_class,config", [(VQViTForImageClassification, VQViTConfig(**VIT)),
                                                (VQVAEModel, VQVAEConfig(**VAE))])
def test_keep_in_fp32_modules_strict(model_class, config, build, dtype, tmp_path):
    """transformers' test_keep_in_fp32_modules_strict(_also_hardcode_fp32): in a half-precision model, exactly the
    parameters under `_keep_in_fp32_modules_strict` are fp32, also when built from a config."""
    if build == "from_config":
        model = model_class._from_config(config, dtype=dtype)
    else:
        model_class(config).save_pretrained(tmp_path)
        model = model_class.from_pretrained(tmp_path, dtype=dtype)
    assert model_class._keep_in_fp32_modules_strict == ["quantizer"]
    assert torch.get_default_dtype() == torch.float32
    for name, param in model.named_parameters():
        strict = any(part in model_class._keep_in_fp32_modules_strict for part in name.split("."))
        assert param.dtype == (torch.float32 if strict else dtype), name
    pixels = torch.randn(2, config.num_channels, 16, 16, dtype=dtype)
    with torch.no_grad():
        output = model.eval()(pixels)
    assert torch.isfinite(output.logits if hasattr(output, "logits") else output.reconstruction).all()
