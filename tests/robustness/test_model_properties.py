"""Property-based checks of VQVAEModel and VQViTForImageClassification over tiny configs × quantizer options ×
pre-quantizer normalizations × batch sizes × dtypes (hypothesis): shapes/dtypes/index ranges, finite loss and
gradients in training, eval determinism without state changes, codes of the normalised z_e that decode to the
model's own outputs, and an exact, strict save_pretrained → from_pretrained round trip.

HF_VQ_MODEL_PROPERTY_EXAMPLES=N raises the number of examples per test (default 30) for a longer bug hunt.
"""

import os
import tempfile

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_vq import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification

from ..models import single_threaded  # noqa: F401  (autouse fixture: one intra-op thread)

MAX_EXAMPLES = int(os.environ.get("HF_VQ_MODEL_PROPERTY_EXAMPLES", "30"))
PROPERTY_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = ["fp32", "bf16-autocast", "fp64"]


@st.composite
def quantizer_options(draw):
    codebook_size = draw(st.integers(1, 16))
    codebook_update = draw(st.sampled_from(["gradient", "ema"]))
    # codebook_update="ema" with an affine is rejected by the layer (a ValueError naming both options, checked
    # by test_ema_codebook_with_an_affine_is_rejected_by_name below), so the affine is drawn for "gradient" only.
    affine = None if codebook_update == "ema" else draw(st.sampled_from([None, "learnable", "ema"]))
    options = {
        "codebook_size": codebook_size,
        "codebook_update": codebook_update,
        "affine": affine,  # always set: the models' own default is a learnable affine
        "distance": draw(st.sampled_from(["euclidean", "cosine"])),
        "beta": draw(st.floats(0.0, 1.0)),
        "commitment_weight": draw(st.sampled_from([0.0, 1.0, 5.0])),
        "sync_nu": draw(st.sampled_from([0.0, 0.01, 1.0])),
        "replace_after": draw(st.integers(0, 3)),
        "kmeans_init": draw(st.booleans()),
        "stochastic_temperature": draw(st.sampled_from([None, 1.0])),
        "chunk_size": draw(st.sampled_from([None, 1, 3])),
    }
    if affine is not None:
        options["affine_groups"] = draw(st.sampled_from([g for g in (1, 2, 4) if codebook_size % g == 0]))
        options["affine_lr_scale"] = draw(st.sampled_from([1.0, 10.0]))
    return options


@st.composite
def vae_setups(draw):
    groups = draw(st.sampled_from([1, 2, 4]))
    blocks = draw(st.integers(1, 2))
    factor = 2 ** (blocks - 1)
    num_channels = draw(st.integers(1, 3))
    # The model is convolutional: any multiple of the downsampling factor is a valid side, not just image_size.
    shape = (draw(st.integers(1, 3)), num_channels, factor * draw(st.integers(1, 3)), factor * draw(st.integers(1, 3)))
    # Left out: one image whose latent grid is 1×1 with one channel per GroupNorm group at latent resolution
    # (the last width, and the one before it, which the last encoder block's first ResNet normalises). Each
    # group then holds a single value, and torch's F.group_norm raises its batch-norm-style "Expected more than
    # 1 value per channel when training" (in eval too; with 2+ images it normalises each lone value to 0).
    # The model refuses that input with a named ValueError (tests/models/test_vq_vae.py), so it is not drawn.
    lone_values = shape[0] == 1 and shape[2] == shape[3] == factor
    widths = [groups * draw(st.integers(1, 2)) for _ in range(blocks)]
    if lone_values:
        widths[-2:] = [groups * 2] * len(widths[-2:])
    # Configs the VQ-VAE refuses by name (test_unusable_pre_quant_norm_is_rejected_by_name) are not drawn: a
    # pre-quant GroupNorm needs latent_channels a multiple of the groups (two per group for the lone-value case
    # above), a LayerNorm over one channel would map every latent to 0.
    pre_quant_norm = draw(st.sampled_from(["none", "layernorm", "groupnorm"]))
    if pre_quant_norm == "groupnorm":
        latent_channels = groups * (2 if lone_values else draw(st.integers(1, 2)))
    else:
        latent_channels = draw(st.integers(2 if pre_quant_norm == "layernorm" else 1, 6))
    config = {
        "image_size": factor * draw(st.integers(1, 2)),
        "num_channels": num_channels,
        "block_out_channels": widths,
        "layers_per_block": 1,
        "latent_channels": latent_channels,
        "norm_num_groups": groups,
        "act_fn": draw(st.sampled_from(["silu", "gelu"])),
        "mid_block_add_attention": draw(st.booleans()),
        "pre_quant_norm": pre_quant_norm,
        "quantizer": draw(quantizer_options()),
    }
    return config, shape


@st.composite
def vit_setups(draw):
    heads = draw(st.integers(1, 2))
    layers = draw(st.integers(1, 3))
    patch = draw(st.integers(2, 4))
    pre_quant_norm = draw(st.sampled_from(["none", "layernorm"]))  # a LayerNorm needs 2+ features per token
    config = {
        "image_size": patch * draw(st.integers(1, 3)),
        "patch_size": patch,
        "num_channels": draw(st.integers(1, 3)),
        "hidden_size": heads * draw(st.integers(2 if pre_quant_norm == "layernorm" and heads == 1 else 1, 4)),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": draw(st.integers(1, 8)),
        "qkv_bias": draw(st.booleans()),
        "quantizer_layer": draw(st.none() | st.integers(1, layers)),  # None: the default, max(1, layers // 2)
        "quantize_cls_token": draw(st.booleans()),
        "pre_quant_norm": pre_quant_norm,
        # num_labels=1 is regression (MSE on float labels) in transformers' loss, a different task: not drawn.
        "num_labels": draw(st.integers(2, 4)),
        "attn_implementation": draw(st.sampled_from(["eager", "sdpa"])),
        "quantizer": draw(quantizer_options()),
    }
    batch = draw(st.integers(1, 3))
    return config, batch


# ---------------------------------------------------------------------------------------------------- helpers


def _prepare(model, dtype: str):
    """(model, input dtype, autocast context factory, expected float output dtype)."""
    if dtype == "fp64":
        model = model.double()
    in_dtype = torch.float64 if dtype == "fp64" else torch.float32
    out_dtype = torch.bfloat16 if dtype == "bf16-autocast" else in_dtype

    def context():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16-autocast")

    return model, in_dtype, context, out_dtype


def _tensors(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, non-persistent ones included, cloned."""
    named = dict(model.named_parameters())
    named.update(model.named_buffers())
    return {name: t.detach().clone() for name, t in named.items()}


def _assert_same_tensors(before: dict, after: dict, what: str) -> None:
    assert before.keys() == after.keys(), f"{what}: keys differ {before.keys() ^ after.keys()}"
    changed = [k for k in before if before[k].dtype != after[k].dtype or not torch.equal(before[k], after[k])]
    assert not changed, f"{what}: {changed}"


def _train_steps(model, forward, steps: int) -> None:
    """`steps` SGD steps; after each backward, the loss and every gradient must be finite."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = forward()
        assert loss.shape == () and torch.isfinite(loss), f"training loss {loss}"
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), f"non-finite gradient of {name}"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _assert_indices(indices, shape, codebook_size) -> None:
    assert indices.shape == shape and indices.dtype == torch.long, (indices.shape, indices.dtype, shape)
    assert bool(((indices >= 0) & (indices < codebook_size)).all()), f"indices outside [0, {codebook_size})"


def _assert_quantizer_stats(out, codebook_size, vectors) -> None:
    assert torch.isfinite(out.quantizer_loss) and torch.isfinite(out.commitment_loss)
    assert 1.0 - 1e-4 <= float(out.perplexity) <= min(codebook_size, vectors) + 1e-3, float(out.perplexity)
    assert 0.0 < float(out.active_codes) <= min(codebook_size, vectors) / codebook_size + 1e-6


def _vae_pre_quant_norm(raw: torch.Tensor, config: VQVAEConfig) -> torch.Tensor:
    """What `config.pre_quant_norm` should make of quant_conv's output (B, D, h, w), in torch.nn.functional terms."""
    if config.pre_quant_norm == "layernorm":  # each position's D channels
        return F.layer_norm(raw.movedim(1, -1), (config.latent_channels,), eps=1e-6).movedim(-1, 1)
    if config.pre_quant_norm == "groupnorm":  # each sample's channel groups over the latent grid
        return F.group_norm(raw, config.norm_num_groups, eps=1e-6)
    return raw


def _round_trip(model, model_class, **load_kwargs):
    """save_pretrained → from_pretrained in a fresh directory; the load must be strict."""
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        assert os.path.exists(os.path.join(directory, "model.safetensors"))
        loaded, info = model_class.from_pretrained(directory, output_loading_info=True, **load_kwargs)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    assert type(loaded) is model_class and not loaded.training
    assert loaded.config.quantizer == model.config.quantizer
    assert loaded.config.pre_quant_norm == model.config.pre_quant_norm
    saved, restored = model.state_dict(), loaded.state_dict()
    _assert_same_tensors(saved, restored, "state_dict changed by save/load")
    # outputs are compared on the model as loaded: from_pretrained copies the memory-mapped CPU weights into
    # aligned memory, without which oneDNN kernels round differently (loading.align_cpu_tensors)
    return loaded


# ---------------------------------------------------------------------------------------------------- VQ-VAE


@PROPERTY_SETTINGS
@given(setup=vae_setups(), dtype=st.sampled_from(DTYPES), steps=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_vae_properties(setup, dtype, steps, seed):
    config_kwargs, shape = setup
    torch.manual_seed(seed)
    config = VQVAEConfig(**config_kwargs)
    model, in_dtype, context, out_dtype = _prepare(VQVAEModel(config), dtype)
    K, factor = config.quantizer["codebook_size"], config.downsampling_factor
    x = torch.rand(shape, dtype=in_dtype) * 2 - 1
    index_shape = (shape[0], shape[2] // factor, shape[3] // factor)
    vectors = index_shape[0] * index_shape[1] * index_shape[2]  # may be fewer than the codes

    # -- training: shapes, dtypes, finite loss and gradients (gradients reach the encoder through the STE)
    def forward():
        with context():
            out = model(x)
        assert out.reconstruction.shape == x.shape and out.reconstruction.dtype == out_dtype
        _assert_indices(out.codebook_indices, index_shape, K)
        _assert_quantizer_stats(out, K, vectors)
        assert torch.isfinite(out.reconstruction).all()
        return out.loss

    _train_steps(model, forward, steps)
    assert int(model.quantizer.num_steps) == steps
    assert model.encoder.conv_in.weight.grad is None  # zeroed by the last step; set again below
    with context():
        model(x).loss.backward()
    assert model.encoder.conv_in.weight.grad is not None and torch.isfinite(model.encoder.conv_in.weight.grad).all()
    model.zero_grad(set_to_none=True)

    # -- eval: deterministic and read-only
    model.eval()
    before = _tensors(model)
    with torch.no_grad(), context():
        first, second = model(x), model(x)
        encoded = model.encode(x)
        raw = model.quant_conv(model.encoder(x))  # before pre_quant_norm
        normalised = _vae_pre_quant_norm(raw, config)
        from_indices = model.decode(first.codebook_indices)
        from_latents = model.decode(encoded.latents)
        looked_up = model.quantizer.lookup(first.codebook_indices)
    _assert_same_tensors(before, _tensors(model), "eval forward/encode/decode changed model state")
    for name in ("reconstruction", "codebook_indices", "loss", "commitment_loss", "perplexity"):
        assert torch.equal(first[name], second[name]), f"eval forward is not deterministic: {name}"
    assert first.reconstruction.shape == x.shape and first.reconstruction.dtype == out_dtype
    _assert_indices(first.codebook_indices, index_shape, K)

    # -- encode's latents are the normalised z_e; the reported codes decode to the forward's reconstruction
    assert torch.equal(encoded.latents, normalised), \
        f"latents are not pre_quant_norm={config.pre_quant_norm!r} of quant_conv's output"
    assert torch.equal(encoded.codebook_indices, first.codebook_indices)
    assert encoded.latents.shape == (shape[0], config.latent_channels) + index_shape[1:]
    assert torch.equal(encoded.quantized, looked_up.to(encoded.quantized.dtype))
    assert torch.equal(from_indices, first.reconstruction), "decode(indices) differs from forward"
    assert torch.equal(from_latents, first.reconstruction), "decode(latents) differs from forward"

    # -- save/load round trip: strict, exact state, exact outputs
    loaded = _round_trip(model, VQVAEModel)
    with torch.no_grad(), context():
        again = loaded(x)
    assert torch.equal(again.reconstruction, first.reconstruction)
    assert torch.equal(again.codebook_indices, first.codebook_indices)
    assert torch.equal(again.loss, first.loss)


# ---------------------------------------------------------------------------------------------------- VQ-ViT


@PROPERTY_SETTINGS
@given(setup=vit_setups(), dtype=st.sampled_from(DTYPES), steps=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_vit_properties(setup, dtype, steps, seed):
    config_kwargs, batch = setup
    torch.manual_seed(seed)
    config = VQViTConfig(**config_kwargs)
    model, in_dtype, context, out_dtype = _prepare(VQViTForImageClassification(config), dtype)
    K, q = config.quantizer["codebook_size"], config.quantizer_layer
    x = torch.randn(batch, config.num_channels, config.image_size, config.image_size, dtype=in_dtype)
    labels = torch.randint(0, config.num_labels, (batch,))
    patches = (config.image_size // config.patch_size) ** 2
    tokens = patches + 1 if config.quantize_cls_token else patches
    index_shape = (batch, tokens)

    # -- training: shapes, dtypes, finite loss and gradients
    def forward():
        with context():
            out = model(x, labels=labels)
        assert out.logits.shape == (batch, config.num_labels) and out.logits.dtype == out_dtype
        _assert_indices(out.codebook_indices, index_shape, K)
        _assert_quantizer_stats(out, K, batch * tokens)
        assert torch.isfinite(out.logits).all()
        return out.loss

    _train_steps(model, forward, steps)
    assert int(model.quantizer.num_steps) == steps
    patch_weight = model.vit.embeddings.patch_embeddings.projection.weight
    assert patch_weight.grad is None
    with context():
        model(x, labels=labels).loss.backward()
    assert patch_weight.grad is not None and torch.isfinite(patch_weight.grad).all()  # STE reaches the embeddings
    model.zero_grad(set_to_none=True)

    # -- eval: deterministic and read-only; capture z_e (output of block q) and z_q (input of what follows)
    model.eval()
    seen = {}
    after = model.vit.layers[q] if q < config.num_hidden_layers else model.vit.layernorm
    hooks = [
        model.vit.layers[q - 1].register_forward_hook(
            lambda m, args, out: seen.setdefault("z_e", out[0] if isinstance(out, tuple) else out)
        ),
        after.register_forward_pre_hook(lambda m, args: seen.setdefault("z_q", args[0])),
    ]
    before = _tensors(model)
    try:
        with torch.no_grad(), context():
            first = model(x, labels=labels)
            seen_first = dict(seen)
            second = model(x, labels=labels)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        z_e, z_q = seen_first["z_e"], seen_first["z_q"]
        quantized_e = z_e if config.quantize_cls_token else z_e[:, 1:]
        quantized_q = z_q if config.quantize_cls_token else z_q[:, 1:]
        with context():
            if config.pre_quant_norm == "layernorm":
                quantized_e = F.layer_norm(quantized_e, (config.hidden_size,), eps=config.layer_norm_eps)
            requantized = model.quantizer(quantized_e)
        looked_up = model.quantizer.lookup(first.codebook_indices)
    _assert_same_tensors(before, _tensors(model), "eval forward changed model state")
    for name in ("logits", "codebook_indices", "loss", "commitment_loss", "perplexity"):
        assert torch.equal(first[name], second[name]), f"eval forward is not deterministic: {name}"
    assert first.logits.shape == (batch, config.num_labels) and first.logits.dtype == out_dtype
    _assert_indices(first.codebook_indices, index_shape, K)

    # -- reported codes: those of the (normalised) block-q features; the next block sees exactly their vectors
    assert torch.equal(requantized.indices, first.codebook_indices)
    assert torch.equal(quantized_q, looked_up.to(quantized_q.dtype)), \
        "tokens after the quantizer are not lookup(indices)"
    if not config.quantize_cls_token:
        assert torch.equal(z_q[:, 0], z_e[:, 0]), "the unquantized [CLS] token was changed"

    # -- save/load round trip: strict, exact state, exact outputs
    # The attention back-end is a loading choice that config.json does not record (eager and sdpa round apart).
    loaded = _round_trip(model, VQViTForImageClassification, attn_implementation=config._attn_implementation)
    assert loaded.config._attn_implementation == config_kwargs["attn_implementation"]
    with torch.no_grad(), context():
        again = loaded(x, labels=labels)
    assert torch.equal(again.logits, first.logits)
    assert torch.equal(again.codebook_indices, first.codebook_indices)
    assert torch.equal(again.loss, first.loss)


# ---------------------------------------------------------------------------------------------------- excluded configs


@settings(max_examples=10, deadline=None)
@given(
    model=st.sampled_from(["vae", "vit"]),
    affine=st.sampled_from(["learnable", "ema"]),
    codebook_size=st.integers(1, 16),
)
def test_ema_codebook_with_an_affine_is_rejected_by_name(model, affine, codebook_size):
    """The combination the strategies leave out fails at config time with a ValueError naming both options."""
    quantizer = {"codebook_size": codebook_size, "codebook_update": "ema", "affine": affine}
    with pytest.raises(ValueError, match=r"codebook_update='ema'.*affine="):
        if model == "vae":
            VQVAEConfig(image_size=2, block_out_channels=[2, 2], latent_channels=2, norm_num_groups=1,
                        quantizer=quantizer)
        else:
            VQViTConfig(image_size=4, patch_size=2, hidden_size=2, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=2, quantizer=quantizer)


@settings(max_examples=20, deadline=None)
@given(groups=st.integers(1, 4), latent_channels=st.integers(1, 12), norm=st.sampled_from(["layernorm", "groupnorm"]))
def test_unusable_pre_quant_norm_is_rejected_by_name(groups, latent_channels, norm):
    """The VQ-VAE configs the strategy leaves out fail at config time with a ValueError naming the fields; the
    others build. The VQ-ViT refuses a GroupNorm of tokens by name."""
    kwargs = dict(image_size=2, block_out_channels=[groups, groups], latent_channels=latent_channels,
                  norm_num_groups=groups, pre_quant_norm=norm, quantizer={"codebook_size": 2})
    if norm == "groupnorm" and latent_channels % groups:
        message = rf"pre_quant_norm='groupnorm'.*norm_num_groups={groups}.*latent_channels={latent_channels}"
        with pytest.raises(ValueError, match=message):
            VQVAEConfig(**kwargs)
    elif norm == "layernorm" and latent_channels == 1:
        with pytest.raises(ValueError, match=r"pre_quant_norm='layernorm' over latent_channels=1"):
            VQVAEConfig(**kwargs)
    else:
        assert VQVAEConfig(**kwargs).pre_quant_norm == norm
    with pytest.raises(ValueError, match=r"pre_quant_norm must be one of 'none', 'layernorm', got 'groupnorm'"):
        VQViTConfig(image_size=4, patch_size=2, hidden_size=latent_channels, num_hidden_layers=1,
                    num_attention_heads=1, intermediate_size=2, pre_quant_norm="groupnorm")
