"""Model outputs name the share of codes in use `active_codes`; `codebook_usage` stays one release as a
read-only alias that warns once."""

import warnings

import pytest
import torch

import hf_vq.models.outputs
from hf_vq import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification, VQViTModel

from . import single_threaded  # noqa: F401  (autouse fixture)


def vae_output():
    model = VQVAEModel(VQVAEConfig(image_size=8, block_out_channels=[8, 8], layers_per_block=1, latent_channels=4,
                                   norm_num_groups=4, quantizer={"codebook_size": 64}))
    return model.config, model.eval()(torch.rand(2, 3, 8, 8) * 2 - 1)


def vit_outputs(model_class):
    config = VQViTConfig(image_size=16, patch_size=4, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=16, num_labels=2, quantizer={"codebook_size": 64})
    return config, model_class(config).eval()(torch.randn(2, 3, 16, 16))


OUTPUTS = {"vae": vae_output, "vit": lambda: vit_outputs(VQViTModel),
           "vit-classifier": lambda: vit_outputs(VQViTForImageClassification)}


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(hf_vq.models.outputs, "_warned", set())


@pytest.mark.parametrize("name", OUTPUTS)
def test_active_codes_is_the_share_of_codes_selected(name):
    torch.manual_seed(0)
    config, out = OUTPUTS[name]()
    K = config.quantizer["codebook_size"]
    assert "active_codes" in out.keys() and "codebook_usage" not in out.keys()
    assert float(out.active_codes) == out.codebook_indices.unique().numel() / K  # brute force
    assert 0 < float(out.active_codes) < 1  # 32 or 34 vectors cannot select all 64 codes: not trivially 1
    assert (
        "active_codes" in config.keys_to_ignore_at_inference
        and "codebook_usage" not in config.keys_to_ignore_at_inference
    )


@pytest.mark.parametrize("name", OUTPUTS)
def test_codebook_usage_is_a_deprecated_read_only_alias(name, fresh_warnings):
    _, out = OUTPUTS[name]()
    with pytest.warns(FutureWarning, match=r"`codebook_usage` is renamed `active_codes`"):
        assert out.codebook_usage is out.active_codes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: a second read is silent
        assert out.codebook_usage is out.active_codes
    with pytest.raises(AttributeError):
        out.codebook_usage = torch.tensor(0.5)
