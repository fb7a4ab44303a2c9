"""`pre_quant_norm` on both models: the quantizer sees normalised z_e (checked against torch.nn.functional),
gradients flow through the normalization, decoding from codes is unaffected, save/load is exact, configs without
the field load as "none", bad values are named at config time, and to_diffusers() refuses a normalised VAE."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

from hf_vq import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification

from . import single_threaded  # noqa: F401  (autouse fixture)

VAE = dict(image_size=16, block_out_channels=[32, 32], layers_per_block=1, latent_channels=8, norm_num_groups=4)
VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
           intermediate_size=64, num_labels=3)
VAE_NORMS = ["none", "layernorm", "groupnorm"]


def vae(pre_quant_norm, seed=0, **overrides):
    torch.manual_seed(seed)
    config = VQVAEConfig(**{**VAE, **overrides}, pre_quant_norm=pre_quant_norm, quantizer={"codebook_size": 16})
    return VQVAEModel(config)


def vit(pre_quant_norm, seed=0, **overrides):
    torch.manual_seed(seed)
    return VQViTForImageClassification(
        VQViTConfig(**{**VIT, **overrides}, pre_quant_norm=pre_quant_norm, quantizer={"codebook_size": 16})
    )


@pytest.fixture
def pixels():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture
def vit_pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def quantizer_input(model, run):
    """(what `run()` returns, the tensor the model's quantizer received)."""
    seen = []
    hook = model.quantizer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        result = run()
    finally:
        hook.remove()
    assert len(seen) == 1
    return result, seen[0]


# ---------------------------------------------------------------------------------------------------- config


def test_default_is_none_and_adds_no_parameters():
    assert VQVAEConfig().pre_quant_norm == "none" and VQViTConfig().pre_quant_norm == "none"
    keys = set(vae("none").state_dict())
    for norm in ("layernorm", "groupnorm"):  # no learnable affine: the same checkpoint keys
        assert set(vae(norm).state_dict()) == keys
    assert set(vit("layernorm").state_dict()) == set(vit("none").state_dict())
    assert type(vae("none").pre_quant_norm) is torch.nn.Identity


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: VQVAEConfig(pre_quant_norm="batchnorm"),
         r"pre_quant_norm must be one of 'none', 'layernorm', 'groupnorm', got 'batchnorm'"),
        (lambda: VQVAEConfig(pre_quant_norm=None), r"pre_quant_norm must be one of .*got None"),
        (lambda: VQVAEConfig(pre_quant_norm="LayerNorm"), r"pre_quant_norm must be one of .*got 'LayerNorm'"),
        (lambda: VQVAEConfig(**{**VAE, "latent_channels": 6}, pre_quant_norm="groupnorm"),
         r"pre_quant_norm='groupnorm' .*norm_num_groups=4 .*latent_channels=6 is not a multiple"),
        (lambda: VQVAEConfig(**{**VAE, "latent_channels": 1}, pre_quant_norm="layernorm"),
         r"pre_quant_norm='layernorm' over latent_channels=1"),
        (lambda: VQViTConfig(pre_quant_norm="groupnorm"),
         r"pre_quant_norm must be one of 'none', 'layernorm', got 'groupnorm'; "
         r"tokens .* 'groupnorm' is for the VQ-VAE"),
        (lambda: VQViTConfig(pre_quant_norm="batchnorm"),
         r"pre_quant_norm must be one of 'none', 'layernorm', got 'batchnorm'$"),
        (lambda: VQViTConfig(hidden_size=1, num_attention_heads=1, pre_quant_norm="layernorm"),
         r"pre_quant_norm='layernorm' over hidden_size=1"),
    ],
)
def test_bad_values_are_named_at_config_time(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_value_set_after_construction_is_named_before_the_model_is_built(tmp_path):
    config = VQVAEConfig(**VAE, quantizer={"codebook_size": 16})
    config.pre_quant_norm = "batchnorm"
    with pytest.raises(ValueError, match="pre_quant_norm must be one of"):
        VQVAEModel(config)
    config = VQViTConfig(**VIT, quantizer={"codebook_size": 16})
    config.pre_quant_norm = "groupnorm"
    with pytest.raises(ValueError, match="pre_quant_norm must be one of 'none', 'layernorm'"):
        VQViTForImageClassification(config)
    vae("none").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"latent_channels=8 is not a multiple"):
        VQVAEModel.from_pretrained(tmp_path, pre_quant_norm="groupnorm", norm_num_groups=3)


@pytest.mark.parametrize("model", ["vae", "vit"])
def test_config_without_the_field_loads_as_none(tmp_path, model, pixels, vit_pixels):
    """A config.json written before the option existed (no `pre_quant_norm` key) builds the same model."""
    original = (vae if model == "vae" else vit)("none").eval()
    original.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["pre_quant_norm"] == "none"
    del data["pre_quant_norm"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert AutoConfig.from_pretrained(tmp_path).pre_quant_norm == "none"
    loaded = type(original).from_pretrained(tmp_path).eval()
    assert loaded.config.pre_quant_norm == "none" and type(loaded.pre_quant_norm) is torch.nn.Identity
    x = pixels if model == "vae" else vit_pixels
    with torch.no_grad():
        assert torch.equal(loaded(x).codebook_indices, original(x).codebook_indices)


# ---------------------------------------------------------------------------------------------------- the math


@pytest.mark.parametrize("norm", ["layernorm", "groupnorm"])
def test_vae_quantizer_sees_normalised_latents(pixels, norm):
    model = vae(norm).eval()
    with torch.no_grad():
        raw = model.quant_conv(model.encoder(pixels))  # (B, D, h, w) before the normalization
        out, seen = quantizer_input(model, lambda: model(pixels))
        encoded = model.encode(pixels)
    B, D, h, w = raw.shape
    if norm == "layernorm":  # each position's D channels
        reference = F.layer_norm(raw.permute(0, 2, 3, 1), (D,), eps=1e-6).permute(0, 3, 1, 2)

        def sets(t):
            return t.permute(0, 2, 3, 1).reshape(B * h * w, D)
    else:  # each sample's norm_num_groups groups of D / G channels, over the whole latent grid
        G = model.config.norm_num_groups
        reference = F.group_norm(raw, G, eps=1e-6)

        def sets(t):
            return t.reshape(B * G, D // G * h * w)
    assert torch.allclose(seen, reference, atol=1e-6, rtol=0)
    raw_var = sets(raw).var(1, unbiased=False)
    assert raw_var.max() < 0.5  # the raw latents are far from normalised: the checks below can fail
    assert torch.allclose(sets(seen).mean(1), torch.zeros(len(raw_var)), atol=1e-5)
    assert torch.allclose(sets(seen).var(1, unbiased=False), raw_var / (raw_var + 1e-6), atol=1e-5)  # ≈ 1
    assert torch.equal(encoded.latents, seen)  # encode's latents are what the quantizer receives
    assert torch.equal(model.quantizer(reference).indices, out.codebook_indices)


@pytest.mark.parametrize("quantize_cls_token", [True, False])
def test_vit_quantizer_sees_normalised_tokens(vit_pixels, quantize_cls_token):
    model = vit("layernorm", quantize_cls_token=quantize_cls_token).eval()
    q, D = model.config.quantizer_layer, model.config.hidden_size
    following = []
    hook = model.vit.layers[q].register_forward_pre_hook(lambda module, args: following.append(args[0]))
    try:
        with torch.no_grad():
            out, seen = quantizer_input(model, lambda: model(vit_pixels, output_hidden_states=True))
    finally:
        hook.remove()
    block_output = out.hidden_states[q]  # before the normalization
    quantized = block_output if quantize_cls_token else block_output[:, 1:]
    reference = F.layer_norm(quantized, (D,), eps=model.config.layer_norm_eps)
    assert torch.allclose(seen, reference, atol=1e-6, rtol=0)
    raw_var = quantized.var(-1, unbiased=False)
    assert not torch.allclose(raw_var, torch.ones_like(raw_var), atol=0.1)  # the checks below can fail
    assert torch.allclose(seen.mean(-1), torch.zeros_like(raw_var), atol=1e-5)
    # ≈ 1; a small-variance token (the fresh [CLS] token's is ~1e-3) reaches raw_var / (raw_var + eps)
    assert torch.allclose(seen.var(-1, unbiased=False), raw_var / (raw_var + model.config.layer_norm_eps), atol=1e-5)
    assert torch.equal(model.quantizer(reference).indices, out.codebook_indices)
    if not quantize_cls_token:  # the [CLS] token bypasses the quantizer and its normalization
        assert torch.equal(following[0][:, 0], block_output[:, 0])


@pytest.mark.parametrize("norm", VAE_NORMS)
def test_vae_gradients_flow_through_the_normalization(pixels, norm):
    model = vae(norm).train()
    raw = []

    def keep_gradient(module, args, output):
        output.retain_grad()
        raw.append(output)

    model.quant_conv.register_forward_hook(keep_gradient)
    model(pixels).loss.backward()
    for name in ("encoder.conv_in.weight", "quant_conv.weight", "quantizer.codebook_signal", "post_quant_conv.weight"):
        grad = model.get_parameter(name).grad
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    if norm == "none":
        return
    # A normalization without affine is invariant to shifting and scaling each set of values it normalises, so
    # the gradient reaching its input has no component along the constant vector or the normalised output.
    if norm == "layernorm":  # a set: one position's channels
        def sets(t):
            return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    else:  # a set: one sample's group of channels over the latent grid
        def sets(t):
            return t.reshape(t.shape[0] * model.config.norm_num_groups, -1)
    grad, normalised = sets(raw[0].grad), sets(model.pre_quant_norm(raw[0].detach()))
    bound = 1e-4 * grad.abs().max() * grad.shape[1]
    assert grad.abs().sum(1).min() > bound  # not vanishing
    assert grad.sum(1).abs().max() <= bound
    assert (grad * normalised).sum(1).abs().max() <= bound


def test_vit_gradients_flow_through_the_normalization(vit_pixels):
    model = vit("layernorm").train()
    model(vit_pixels, labels=torch.tensor([0, 2])).loss.backward()
    for name in ("vit.embeddings.patch_embeddings.projection.weight", "quantizer.codebook_signal",
                 "classifier.weight"):
        grad = model.get_parameter(name).grad
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm", VAE_NORMS)
def test_vae_decoding_from_codes_is_unaffected(pixels, norm):
    """The normalization sits before the quantizer: decode(indices) equals the forward's reconstruction, and
    equals what the same weights decode without any normalization."""
    model = vae(norm).eval()
    plain = vae("none", seed=1).eval()
    plain.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        out = model(pixels)
        assert torch.equal(model.decode(out.codebook_indices), out.reconstruction)
        assert torch.equal(model.decode(model.encode(pixels).latents), out.reconstruction)
        assert torch.equal(plain.decode(out.codebook_indices), out.reconstruction)
        if norm != "none":  # ...while the encoding side is changed by it
            assert not torch.equal(plain(pixels).codebook_indices, out.codebook_indices)


# ------------------------------------------------------------------------------------------- save / load / export


@pytest.mark.parametrize("norm", ["layernorm", "groupnorm"])
def test_vae_save_load_is_bit_identical(tmp_path, pixels, norm):
    model = vae(norm)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        model.train()(pixels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        expected = model(pixels)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pre_quant_norm"] == norm
    for loaded in (VQVAEModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert loaded.config.pre_quant_norm == norm and repr(loaded.pre_quant_norm) == repr(model.pre_quant_norm)
        with torch.no_grad():
            out = loaded.eval()(pixels)
        assert torch.equal(out.reconstruction, expected.reconstruction)
        assert torch.equal(out.codebook_indices, expected.codebook_indices)


def test_vit_save_load_is_bit_identical(tmp_path, vit_pixels):
    model = vit("layernorm").eval()
    with torch.no_grad():
        expected = model(vit_pixels)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pre_quant_norm"] == "layernorm"
    loaded = VQViTForImageClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.pre_quant_norm == "layernorm" and repr(loaded.pre_quant_norm) == repr(model.pre_quant_norm)
    with torch.no_grad():
        out = loaded(vit_pixels)
    assert torch.equal(out.logits, expected.logits) and torch.equal(out.codebook_indices, expected.codebook_indices)


@pytest.mark.parametrize("norm", ["layernorm", "groupnorm"])
def test_to_diffusers_refuses_a_normalised_vae(norm):
    model = vae(norm)
    with pytest.raises(ValueError, match=rf"pre_quant_norm='{norm}'.*Train with pre_quant_norm='none' to export"):
        model.to_diffusers()


def test_lone_value_in_a_pre_quant_group_is_named():
    """One image with a 1×1 latent grid and one latent channel per group: torch's GroupNorm would raise its
    batch-norm style error; the model names the fields instead."""
    model = VQVAEModel(VQVAEConfig(image_size=2, num_channels=1, block_out_channels=[8, 8], layers_per_block=1,
                                   latent_channels=4, norm_num_groups=4, pre_quant_norm="groupnorm",
                                   quantizer={"codebook_size": 4})).eval()
    with pytest.raises(ValueError, match=r"latent_channels=4 with pre_quant_norm='groupnorm'"):
        model(torch.randn(1, 1, 2, 2))
    assert model(torch.randn(2, 1, 2, 2)).reconstruction.shape == (2, 1, 2, 2)
