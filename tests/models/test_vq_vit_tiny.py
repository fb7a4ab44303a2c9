"""The `vq_vit_tiny` recipe: the paper's ViT-Tiny (Table 7) and quantizer (Table 6, A.1) on Fashion-MNIST; a
shrunken copy (same recipe, tiny overrides) trains a few steps and its folder works with the Auto classes and
pipeline, on RGB and greyscale images."""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoModel, AutoModelForImageClassification, pipeline

import hf_vq
from hf_vq import VQImageProcessor, VQViTForImageClassification, VQViTModel
from hf_vq.data.builders import FASHION_MNIST_DIR
from hf_vq.training import VQ_VIT, main

from . import single_threaded  # noqa: F401  (autouse fixture)
from .test_model_cards import python_blocks, run_as_pasted, run_without_hf_vq

RECIPE = Path(hf_vq.__file__).parent / "recipes" / "vq_vit_tiny.yaml"
SHRUNKEN = ["--hidden_size", "16", "--num_hidden_layers", "2", "--num_attention_heads", "2",
            "--intermediate_size", "32", "--quantizer_layer", "1", "--quantizer.codebook_size", "16",
            "--max_steps", "3", "--batch_size", "16", "--max_train_samples", "64", "--max_test_samples", "32",
            "--eval_every", "100", "--save_every", "100", "--log_every", "1", "--progress_bar", "false",
            "--log_with", "none"]


def test_recipe_is_the_papers_vit_tiny_on_fashion_mnist():
    recipe = yaml.safe_load(RECIPE.read_text())
    model, quantizer = recipe["model"], recipe["model"]["quantizer"]
    # Table 7: hidden 192, 12 blocks, 3 heads, MLP 768, GELU; quantized after block 6 (A.1)
    assert (model["hidden_size"], model["num_hidden_layers"], model["num_attention_heads"],
            model["intermediate_size"], model["hidden_act"], model["quantizer_layer"]) == (192, 12, 3, 768, "gelu", 6)
    # Table 6 and A.1: α 5, β 0.995, ν 0.01, learnable affine with lr scale 10, 1024 codes
    assert {k: quantizer[k] for k in ("commitment_weight", "beta", "sync_nu", "affine", "affine_lr_scale",
                                       "codebook_size")} == {"commitment_weight": 5.0, "beta": 0.995, "sync_nu": 0.01,
                                                             "affine": "learnable", "affine_lr_scale": 10.0,
                                                             "codebook_size": 1024}
    assert recipe["data"]["source"] == "offline:fashion_mnist" and recipe["output_dir"] == "outputs/vq-vit-tiny"
    assert (model["image_size"], model["num_channels"]) == (28, 1) and model["image_size"] % model["patch_size"] == 0


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs the Debian package dataset-fashion-mnist")
def test_shrunken_recipe_trains_and_its_folder_loads_with_auto_classes_pipeline_and_card(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_VQ_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "vq-vit-tiny"
    result = main(VQ_VIT, {}, ["--config", str(RECIPE), "--output_dir", str(out), *SHRUNKEN])
    assert result.facts["steps"] == 3 and 0.0 <= result.metrics["accuracy"] <= 1.0

    model, info = AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
    assert type(model) is VQViTForImageClassification
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert (model.config.num_channels, model.config.image_size, model.config.num_labels) == (1, 28, 10)
    base = AutoModel.from_pretrained(out)
    assert type(base) is VQViTModel

    classify = pipeline("image-classification", model=str(out))
    assert type(classify.image_processor) is VQImageProcessor and classify.image_processor.num_channels == 1
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    names = set(model.config.id2label.values())
    for image in (rgb, rgb.convert("L")):
        predictions = classify(image, top_k=10)
        assert {p["label"] for p in predictions} == names == {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
        assert abs(sum(p["score"] for p in predictions) - 1.0) < 1e-5

    # the card of the run: Hub metadata, the training length, and its usage snippets run as pasted (the card
    # names the repo "vq-vit-tiny", which from tmp_path is the run's folder)
    card = (out / "README.md").read_text()
    data = ModelCard.load(out / "README.md").data
    assert (data.pipeline_tag, data.library_name, data.datasets) == (
        "image-classification", "transformers", ["zalando-datasets/fashion_mnist"])
    assert {r.metric_type for r in data.eval_results} >= {"accuracy", "perplexity", "active_codes"}
    assert "- **Training:** 3 optimizer steps (0.75 epochs of 64 examples), " in card
    with_hf_vq, remote = python_blocks(card)
    run_as_pasted(with_hf_vq, tmp_path, monkeypatch)
    printed = run_without_hf_vq(remote, tmp_path).stdout
    assert printed.count("'label'") == 3 and all(name in names for name in re.findall(r"'label': '([^']+)'", printed))
