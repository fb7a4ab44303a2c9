"""config.json's `hf_vq_version`: written on save; a newer release's config loads when every field is known
here, and otherwise fails naming the fields and both versions, unless the code saved with it is trusted."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel
from transformers.dynamic_module_utils import get_class_from_dynamic_module

import hf_vq
from hf_vq import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTModel

from . import single_threaded  # noqa: F401  (autouse fixture)

MODELS = {
    "vae": (VQVAEConfig, VQVAEModel, dict(image_size=16, block_out_channels=[8, 8], layers_per_block=1,
                                         latent_channels=4, norm_num_groups=4, mid_block_add_attention=False,
                                         quantizer={"codebook_size": 8})),
    "vit": (VQViTConfig, VQViTModel, dict(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=32, quantizer={"codebook_size": 8})),
}


@pytest.fixture(params=sorted(MODELS))
def saved(request, tmp_path):
    config_class, model_class, kwargs = MODELS[request.param]
    torch.manual_seed(0)
    model = model_class(config_class(**kwargs))
    model.save_pretrained(tmp_path)
    return tmp_path, model


def rewrite(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if key == "quantizer":
            config["quantizer"].update(value)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def test_save_writes_the_release(saved):
    folder, model = saved
    assert json.loads((folder / "config.json").read_text())["hf_vq_version"] == hf_vq.__version__
    assert (folder / "version.py").is_file()  # remote code carries the version it was written with
    config = AutoConfig.from_pretrained(folder)
    assert not hasattr(config, "hf_vq_version")  # bookkeeping, rewritten on every save
    assert config.to_diff_dict() == model.config.to_diff_dict()


def test_newer_release_with_known_fields_loads_the_same_model(saved):
    folder, model = saved
    rewrite(folder, hf_vq_version="99.0.0")
    loaded, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("change,named", [({"attention_window": 4}, "attention_window"),
                                          ({"quantizer": {"codebook_dropout": 0.1}}, "quantizer.codebook_dropout")])
def test_newer_release_with_unknown_fields_names_them(saved, change, named):
    folder, model = saved
    rewrite(folder, hf_vq_version="99.0.0", **change)
    message = (rf"saved by hf_vq 99.0.0, newer than the installed {hf_vq.__version__}, and sets {named}, "
               r".*process that does not import hf_vq.*trust_remote_code=True")
    for load in (AutoConfig.from_pretrained, AutoModel.from_pretrained, type(model).from_pretrained):
        with pytest.raises(ValueError, match=message):
            load(folder)


def test_unknown_fields_of_this_release(saved):
    folder, _ = saved
    rewrite(folder, dataset_note="patches, 40 steps")  # metadata kept as an attribute, as in transformers
    assert AutoConfig.from_pretrained(folder).dataset_note == "patches, 40 steps"
    rewrite(folder, quantizer={"codebook_dropout": 0.1})  # an option this release lacks is never dropped
    with pytest.raises(ValueError, match="Unknown quantizer option 'codebook_dropout'"):
        AutoConfig.from_pretrained(folder)
    rewrite(folder, quantizer={"codebook_dropout": None}, hf_vq_version="soon")
    with pytest.raises(ValueError, match=r"hf_vq_version: 'soon' is not a version number"):
        AutoConfig.from_pretrained(folder)


def test_newer_release_loads_through_its_own_code(saved):
    """What the error advises: the folder's own (newer) code. Where hf_vq is imported, its registered classes
    win over the folder's auto_map, so the code is taken explicitly here; test_remote_code.py checks that
    trust_remote_code=True takes it in a process without hf_vq."""
    folder, model = saved
    (folder / "version.py").write_text((folder / "version.py").read_text().replace(
        f'__version__ = "{hf_vq.__version__}"', '__version__ = "99.0.0"'))
    rewrite(folder, hf_vq_version="99.0.0", attention_window=4)
    with pytest.raises(ValueError, match="attention_window"):
        AutoConfig.from_pretrained(folder)
    model_class = get_class_from_dynamic_module(
        f"{type(model).__module__.rsplit('.', 1)[-1]}.{type(model).__name__}", folder
    )
    assert model_class.__module__.startswith("transformers_modules")
    loaded = model_class.from_pretrained(folder)
    assert loaded.config.attention_window == 4
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("written_by", ["0.1.0", None])
def test_a_0_1_config_keeps_its_effective_commitment_loss(saved, written_by, caplog):
    # 0.1's α weighted ½‖z_e − z_q‖² summed over D; 0.2's weights the element-wise MSE (A.1): α·D/2.
    folder, model = saved
    config = json.loads((folder / "config.json").read_text())
    if written_by is None:
        del config["hf_vq_version"]  # 0.1.0 before versioning: only transformers_version is there
    else:
        config["hf_vq_version"] = written_by
    config["quantizer"]["commitment_weight"] = 0.5
    (folder / "config.json").write_text(json.dumps(config))
    dim = model.quantizer.dim
    with caplog.at_level("WARNING", logger="hf_vq.models.versioning"):
        loaded = AutoModel.from_pretrained(folder)
    assert loaded.config.quantizer["commitment_weight"] == 0.5 * dim / 2
    assert sum("element-wise mean-squared error" in r.message for r in caplog.records) == 1

    # The same loss value: 0.1's α·mean ½‖·‖² summed over D against this release's α'·MSE.
    loaded.train()
    z = torch.randn(64, dim)
    new_loss = loaded.quantizer(z).loss
    codes = loaded.quantizer.codebook[loaded.quantizer(z).indices]
    old_loss = 0.5 * 0.5 * (z - codes).pow(2).sum(-1).mean()
    assert torch.allclose(new_loss, old_loss, rtol=1e-5)


def test_a_config_of_this_release_or_a_hand_written_dict_is_not_converted(saved):
    folder, model = saved
    rewrite(folder, quantizer={"commitment_weight": 0.5})
    assert AutoModel.from_pretrained(folder).config.quantizer["commitment_weight"] == 0.5
    config_class = type(model.config)
    hand_written = {
        k: v for k, v in model.config.to_diff_dict().items() if k not in ("transformers_version", "hf_vq_version")
    }
    plain = config_class.from_dict({**hand_written, "quantizer": {"codebook_size": 8, "commitment_weight": 0.5}})
    assert plain.quantizer["commitment_weight"] == 0.5
