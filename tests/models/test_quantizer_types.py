"""`quantizer.type` in a model config: residual and grouped VQ-VAEs built, trained, saved, reloaded (also as
remote code in a process without hf_vq), decoded from indices, exported to diffusers where it can express them,
and trained through the training loop and its config."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from diffusers import VQModel
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from hf_vq import (
    GroupedVectorQuantizer,
    QuantizerConfig,
    ResidualVectorQuantizer,
    VectorQuantizer,
    VQVAEConfig,
    VQVAEModel,
)
from hf_vq.quantization import FiniteScalarQuantizer, LookupFreeQuantizer, find_quantizers

from . import single_threaded  # noqa: F401  (autouse fixture)
from .test_vq_vae import TINY, train_a_little

TYPES = {
    "vq": {"codebook_size": 16},
    "residual": {"type": "residual", "codebook_size": 16, "num_levels": 3, "quantizer_dropout": True,
                 "replace_after": 2, "level_options": [{"affine": "ema"}, {}, {"affine": None, "sync_nu": 0.0}]},
    "group": {"type": "group", "codebook_size": 16, "num_groups": 2, "replace_after": 2, "distance": "cosine"},
    # the post-2023 fixes that are options of every VectorQuantizer
    "rotation-simvq": {"codebook_size": 16, "rotation_trick": True, "codebook_parametrization": "simvq"},
    "fsq": {"type": "fsq", "levels": [5, 3, 3]},  # K = 45, projections 8 → 3 → 8
    "lfq": {"type": "lfq", "codebook_size": 16},  # 4 bits, projections 8 → 4 → 8
}


def model_of(quantizer: dict, steps: int = 3) -> VQVAEModel:
    """A tiny VQ-VAE trained a few steps, so affines, EMA statistics and LRU clocks hold non-initial values."""
    torch.manual_seed(0)
    return train_a_little(VQVAEModel(VQVAEConfig(**TINY, quantizer=quantizer)), steps=steps)


@pytest.fixture
def pixels():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


# ---------------------------------------------------------------------------------------------------- config


def test_type_chooses_the_quantizer_and_its_options():
    classes = {"vq": VectorQuantizer, "residual": ResidualVectorQuantizer, "group": GroupedVectorQuantizer,
               "fsq": FiniteScalarQuantizer, "lfq": LookupFreeQuantizer}
    for name, settings in TYPES.items():
        config = VQVAEConfig(**TINY, quantizer=settings)
        name = "vq" if name == "rotation-simvq" else name
        assert config.quantizer["type"] == name
        assert type(VQVAEModel(config).quantizer) is classes[name]
    config = VQVAEConfig(**TINY, quantizer=TYPES["residual"])
    # complete: the type's own defaults, the model's defaults (the paper's) for the shared layer options
    assert config.quantizer["min_levels"] == 1 and config.quantizer["affine"] == "learnable"
    assert config.quantizer["sync_nu"] == 0.01 and "num_groups" not in config.quantizer
    model = VQVAEModel(config)
    assert [lv.options.affine for lv in model.quantizer.levels] == ["ema", "learnable", None]
    assert find_quantizers(model) == list(model.quantizer.levels)
    assert QuantizerConfig({"codebook_size": 4}) == QuantizerConfig({"type": "vq", "codebook_size": 4})  # old configs
    simvq = VQVAEConfig(**TINY, quantizer=TYPES["rotation-simvq"]).quantizer  # saved as the layer resolves it
    assert (simvq["affine"], simvq["affine_covariance"]) == ("learnable", "full")


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match=r"quantizer.type must be one of \['fsq', 'group', 'lfq', 'residual', 'vq'\], "
                                         "got 'rvq'"):
        VQVAEConfig(**TINY, quantizer={"type": "rvq", "codebook_size": 16})
    with pytest.raises(ValueError, match="'num_levels'.*type 'vq'; it is an option of quantizer.type 'residual'"):
        VQVAEConfig(**TINY, quantizer={"codebook_size": 16, "num_levels": 2})
    with pytest.raises(ValueError, match="num_groups=3 must divide dim=8"):
        VQVAEConfig(**TINY, quantizer={"type": "group", "codebook_size": 16, "num_groups": 3})
    with pytest.raises(ValueError, match=r"level_options\[1\]: beta must be in \[0, 1\]"):
        VQVAEConfig(**TINY, quantizer={"type": "residual", "codebook_size": 16, "num_levels": 2,
                                       "level_options": [{}, {"beta": 3.0}]})
    config = VQVAEConfig(**TINY, quantizer=TYPES["residual"])
    with pytest.raises(ValueError, match="assign a new dict"):
        config.quantizer["type"] = "group"
    newer = {**VQVAEConfig(**TINY).to_dict(), "hf_vq_version": "99.0", "quantizer": {"type": "spectral", "rank": 5}}
    with pytest.raises(ValueError, match=r"saved by hf_vq 99.0.*sets quantizer.type='spectral'"):
        VQVAEConfig.from_dict(newer)  # a type a newer release registered: upgrade, never a silent other model
    config.quantizer["num_levels"] = 2  # an option of its own type
    with pytest.raises(ValueError, match="min_levels must be <= num_levels=1"):
        config.quantizer = {**config.quantizer, "num_levels": 1, "min_levels": 2}
    with pytest.raises(ValueError, match="codebook_size must be a power of two"):
        VQVAEConfig(**TINY, quantizer={"type": "lfq", "codebook_size": 12})
    with pytest.raises(ValueError, match="'commitment_weight'.*type 'fsq'"):  # FSQ has no loss to weigh
        VQVAEConfig(**TINY, quantizer={"type": "fsq", "levels": [5, 3], "commitment_weight": 1.0})


# ---------------------------------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("name", ["residual", "group", "rotation-simvq", "fsq", "lfq"])
def test_save_load_round_trip_is_bit_identical(tmp_path, pixels, name):
    model = model_of(TYPES[name])
    expected = model(pixels)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["quantizer"] == dict(model.config.quantizer)
    for loaded in (VQVAEModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        out = loaded.eval()(pixels)
        assert torch.equal(out.reconstruction, expected.reconstruction)
        assert torch.equal(out.codebook_indices, expected.codebook_indices)
        saved, restored = model.quantizer.state_dict(), loaded.quantizer.state_dict()
        assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    assert {"residual.py", "grouped.py", "composite.py", "registry.py", "fsq.py", "lfq.py", "base.py"} <= {
        p.name for p in tmp_path.glob("*.py")}


def test_a_checkpoint_of_another_shape_names_the_field(tmp_path):
    residual, group, plain = tmp_path / "residual", tmp_path / "group", tmp_path / "vq"
    model_of(TYPES["residual"], steps=0).save_pretrained(residual)
    model_of(TYPES["group"], steps=0).save_pretrained(group)
    model_of(TYPES["vq"], steps=0).save_pretrained(plain)
    cases = [
        (residual, {**TYPES["residual"], "num_levels": 4, "level_options": None}, "has 3 levels, .*num_levels=4"),
        (residual, {**TYPES["residual"], "num_levels": 2, "level_options": None}, "has 3 levels, .*num_levels=2"),
        (residual, {**TYPES["residual"], "codebook_size": 8}, r"16 codes \(quantizer.levels.0.codebook_signal"),
        (group, {**TYPES["group"], "num_groups": 4}, "has 2 groups, .*num_groups=4"),
        (residual, TYPES["vq"], "not of the config's quantizer.type='vq'"),
        (plain, TYPES["group"], "not of the config's quantizer.type='group'"),
    ]
    for folder, quantizer, message in cases:
        with pytest.raises(ValueError, match=message):
            VQVAEModel.from_pretrained(folder, quantizer=quantizer)


@pytest.mark.parametrize("name", ["residual", "group"])
def test_decode_from_indices_equals_forward(pixels, name):
    model = model_of(TYPES[name])
    with torch.no_grad():
        out = model(pixels)
        members = 3 if name == "residual" else 2
        assert out.codebook_indices.shape == (2, 8, 8, members)
        assert torch.equal(model.decode(out.codebook_indices), out.reconstruction)
        if name == "residual":  # a lower bitrate: the first level only, as forward with num_levels=1 gives
            latents = model.encode(pixels).latents
            one = model.quantizer(latents, num_levels=1)
            assert torch.equal(model.decode(out.codebook_indices[..., :1]),
                               model.decoder(model.post_quant_conv(one.quantized)))
        with pytest.raises(ValueError, match=r"code indices must be \(batch_size, height, width, levels or groups\)"):
            model.decode(out.codebook_indices[..., 0])


# ---------------------------------------------------------------------------------------------------- diffusers


def test_to_diffusers_exports_a_grouped_quantizer_as_its_product_codebook(pixels):
    model = model_of({"type": "group", "codebook_size": 8, "num_groups": 2, "affine": "learnable"})
    exported = model.to_diffusers()
    assert isinstance(exported, VQModel) and exported.quantize.embedding.weight.shape == (64, 8)
    with torch.no_grad():
        latents = model.encode(pixels).latents
        ours = model(pixels)
        assert (exported.decode(latents).sample - ours.reconstruction).abs().max() <= 1e-5
        # diffusers' single search over the product picks the concatenation of the groups' codes
        _, _, (_, _, product) = exported.quantize(latents)
        indices = ours.codebook_indices
        assert torch.equal(product.view(indices.shape[:-1]), indices[..., 0] * 8 + indices[..., 1])


def test_to_diffusers_refuses_what_vqmodel_cannot_express():
    for name in ("fsq", "lfq"):
        with pytest.raises(ValueError, match=f"cannot export quantizer.type='{name}': it rounds a projection"):
            model_of(TYPES[name], steps=0).to_diffusers()
    with pytest.raises(ValueError, match="cannot export quantizer.type='residual' with num_levels=3"):
        model_of(TYPES["residual"], steps=0).to_diffusers()
    with pytest.raises(ValueError, match=r"codebook_size\*\*num_groups = 16\*\*4 = 65536|= 1024\*\*2"):
        model_of({"type": "group", "codebook_size": 1024, "num_groups": 2}, steps=0).to_diffusers()
    single = model_of({"type": "residual", "codebook_size": 16, "num_levels": 1})
    assert torch.equal(single.to_diffusers().quantize.embedding.weight, single.quantizer.levels[0].codebook)


# ---------------------------------------------------------------------------------------------------- remote code

CHILD = textwrap.dedent(
    """
    import sys

    class BlockHfVq:
        def find_spec(self, name, path=None, target=None):
            if name == "hf_vq" or name.startswith("hf_vq."):
                raise ImportError(f"{name} is blocked in this process")

    sys.meta_path.insert(0, BlockHfVq())
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    inputs = load_file(sys.argv[1])
    out = {}
    for folder in sys.argv[2:]:
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        # the levels/groups are the modeling file's own VectorQuantizer class, so _init_weights zeroed their
        # never-saved step counters (a class from another copy of layer.py would leave them uninitialised)
        members = [m for m in model.modules() if isinstance(m, sys.modules[type(model).__module__].VectorQuantizer)]
        assert len(members) in (0, 1, 2, 3) and all(int(m._step_hits.abs().sum()) == 0 for m in members), folder
        result = model(inputs["pixels"])
        out[folder + ":reconstruction"] = result.reconstruction
        out[folder + ":indices"] = result.codebook_indices
        out[folder + ":decoded"] = model.decode(result.codebook_indices)
    save_file({k: v.detach().contiguous() for k, v in out.items()}, sys.argv[1] + ".out")
    """
)


def test_remote_code_loads_every_quantizer_type_without_hf_vq(tmp_path, pixels):
    folders, expected = [], {}
    for name in TYPES:
        model = model_of(TYPES[name])
        folder = str(tmp_path / name)
        model.save_pretrained(folder)
        folders.append(folder)
        with torch.no_grad():
            out = model(pixels)
        expected[folder + ":reconstruction"], expected[folder + ":indices"] = out.reconstruction, out.codebook_indices
        expected[folder + ":decoded"] = out.reconstruction
    save_file({"pixels": pixels}, tmp_path / "inputs.safetensors")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HOME=str(workdir / "hf-home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               OMP_NUM_THREADS="1")
    process = subprocess.run([sys.executable, "-I", "-c", CHILD, str(tmp_path / "inputs.safetensors"), *folders],
                             cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, process.stderr[-4000:]
    got = load_file(tmp_path / "inputs.safetensors.out")
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


# ---------------------------------------------------------------------------------------------------- training


def test_training_loop_trains_a_residual_vqvae_from_its_config(tmp_path):
    from hf_vq.training import VQVAE, train
    from hf_vq.training.config import build_config

    from ..training.test_loop import tiny_data

    settings = {"model": {"block_out_channels": [8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
                          "mid_block_add_attention": False, "image_size": 8,
                          "quantizer": {"type": "residual", "codebook_size": 8, "num_levels": 3, "replace_after": 2}},
                "train": {"batch_size": 4, "max_steps": 3, "lr": 1e-3, "optimization": "alternated"},
                "eval": {"eval_batch_size": 4}, "logging": {"log_with": "none", "progress_bar": False},
                "output_dir": str(tmp_path / "out")}
    cfg = build_config("vqvae", VQVAEConfig, base=settings, argv=["--quantizer.quantizer_dropout", "true"])
    assert cfg.model["quantizer"]["quantizer_dropout"] is True and "num_groups" not in cfg.model["quantizer"]
    run = train(cfg, VQVAE, data=tiny_data(), save=False)
    levels = run.model.quantizer.levels
    assert [int(level.num_steps) for level in levels] == [3, 3, 3]  # one LRU step per optimizer step, every level
    assert all(not level.step_on_forward for level in levels)
    assert run.facts["steps"] == 3 and {"mse", "perplexity", "active_codes"} <= set(run.metrics)
    # evaluation counts each level's codes in its own histogram: 5 test images × 8×8 latents × 3 levels
    assert sum(run.metrics["code_histogram"]) == 5 * 64 * 3 and 1 <= run.metrics["perplexity"] <= 8


def test_vq_vit_builds_a_grouped_quantizer_and_reloads_it(tmp_path):
    from hf_vq import VQViTConfig, VQViTForImageClassification

    torch.manual_seed(0)
    config = VQViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, num_labels=3, quantizer={"type": "group", "codebook_size": 16,
                                                                        "num_groups": 4})
    model = VQViTForImageClassification(config)
    model.train()(torch.randn(4, 3, 32, 32))
    model.eval().save_pretrained(tmp_path)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, out = model(pixels), VQViTForImageClassification.from_pretrained(tmp_path).eval()(pixels)
    assert isinstance(model.quantizer, GroupedVectorQuantizer)
    assert out.codebook_indices.shape == (2, 17, 4) and torch.equal(out.codebook_indices, expected.codebook_indices)
    assert torch.equal(out.logits, expected.logits)


@pytest.mark.parametrize("name", ["fsq", "lfq"])
def test_codebook_free_types_decode_from_indices_and_train_through_the_loop(tmp_path, pixels, name):
    from hf_vq.training import VQVAE, train
    from hf_vq.training.config import ConfigError, build_config

    from ..training.test_loop import tiny_data

    model = model_of(TYPES[name])
    with torch.no_grad():
        out = model(pixels)
        assert out.codebook_indices.shape == (2, 8, 8) and float(out.quantizer_loss) >= 0
        assert torch.equal(model.decode(out.codebook_indices), out.reconstruction)
    settings = {"model": {"block_out_channels": [8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
                          "mid_block_add_attention": False, "image_size": 8, "quantizer": TYPES[name]},
                "train": {"batch_size": 4, "max_steps": 3, "lr": 1e-3, "optimization": "joint"},
                "eval": {"eval_batch_size": 4}, "logging": {"log_with": "none", "progress_bar": False},
                "output_dir": str(tmp_path / "out")}
    run = train(build_config("vqvae", VQVAEConfig, base=settings, argv=[]), VQVAE, data=tiny_data(), save=False)
    metrics = run.metrics
    # the codebook-free quantizer's own K; z_e rank but no codes-in-reach (it has no codes to reach)
    k = run.model.quantizer.codebook_size
    assert sum(metrics["code_histogram"]) == 5 * 64 and len(metrics["code_histogram"]) == k
    assert 1 <= metrics["perplexity"] <= k and 0 < metrics["ze_effective_rank"] <= 4
    assert "codes_in_reach" not in metrics
    with pytest.raises(ConfigError, match="alternated needs a codebook trained by gradient"):
        train(build_config("vqvae", VQVAEConfig, base=settings, argv=["--optimization", "alternated"]), VQVAE,
              data=tiny_data(), save=False)


def test_evaluation_counts_the_joint_codes_of_a_residual_quantizer():
    from hf_vq.training import VQVAE, train
    from hf_vq.training.config import build_config

    from ..training.test_loop import tiny_data

    settings = {"model": {"block_out_channels": [8], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
                          "mid_block_add_attention": False, "image_size": 8,
                          "quantizer": {"type": "residual", "codebook_size": 4, "num_levels": 3}},
                "train": {"batch_size": 4, "max_steps": 2, "lr": 1e-3}, "eval": {"eval_batch_size": 4},
                "logging": {"log_with": "none", "progress_bar": False}, "output_dir": "unused"}
    data = tiny_data()
    run = train(build_config("vqvae", VQVAEConfig, base=settings, argv=[]), VQVAE, data=data, save=False)
    with torch.no_grad():  # brute force: the tuples of level indices of the whole test split, as one index of 4^3
        pixels = torch.stack([data.test[i]["pixel_values"] for i in range(len(data.test))])
        indices = run.model.eval()(pixels).codebook_indices.reshape(-1, 3)
    joint = indices[:, 0] + 4 * indices[:, 1] + 16 * indices[:, 2]
    counts = torch.bincount(joint, minlength=64).double()
    p = counts / counts.sum()
    expected_perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    assert run.metrics["joint_active_codes"] == pytest.approx(float((counts > 0).double().mean()))
    assert run.metrics["joint_perplexity"] == pytest.approx(expected_perplexity, rel=1e-5)
