"""Saved folders load with `trust_remote_code=True` in a process where hf_vq cannot be imported.

One subprocess (isolated: `python -I`, cwd outside the repo, an `hf_vq` import blocker on sys.meta_path,
private HF cache, offline) runs every remote-code check and reports JSON; the tests assert on it.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel
from transformers.dynamic_module_utils import get_imports

from hf_vq import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification
from hf_vq.models.remote_code import write_remote_code

from . import single_threaded  # noqa: F401  (autouse fixture)

VIT = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
)
VAE = dict(image_size=16, block_out_channels=[32, 32], layers_per_block=1, latent_channels=8, norm_num_groups=8)
VAE_NORMS = ("none", "layernorm", "groupnorm")

CHILD = textwrap.dedent(
    """
    import json, os, sys

    class BlockHfVq:  # the project is installed (editable) in this venv: make it unimportable here
        def find_spec(self, name, path=None, target=None):
            if name == "hf_vq" or name.startswith("hf_vq."):
                raise ImportError(f"{name} is blocked in this process")

    sys.meta_path.insert(0, BlockHfVq())
    vit_dir, resave_dir, tensors = sys.argv[1:4]
    vae_dirs = sys.argv[4:]
    report = {}
    try:
        import hf_vq  # noqa: F401
        report["hf_vq_importable"] = True
    except ImportError:
        report["hf_vq_importable"] = False

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    for name, load in (("AutoConfig", AutoConfig.from_pretrained), ("AutoModel", AutoModel.from_pretrained)):
        try:
            load(vit_dir)
            report[f"untrusted_{name}"] = "loaded"
        except ValueError as error:
            report[f"untrusted_{name}"] = str(error)

    inputs = load_file(tensors)
    out = {}
    classifier = AutoModelForImageClassification.from_pretrained(vit_dir, trust_remote_code=True).eval()
    result = classifier(inputs["vit_pixels"], output_hidden_states=True)
    out["vit_logits"] = result.logits
    out["vit_indices"] = result.codebook_indices
    for i, h in enumerate(result.hidden_states):
        out[f"vit_hidden_{i}"] = h
    base = AutoModel.from_pretrained(vit_dir, trust_remote_code=True).eval()
    out["vit_base_last_hidden"] = base(inputs["vit_pixels"]).last_hidden_state
    out["vit_active_codes"] = result.active_codes
    vaes = [AutoModel.from_pretrained(vae_dir, trust_remote_code=True).eval() for vae_dir in vae_dirs]
    for vae_dir, vae in zip(vae_dirs, vaes):
        out[f"reconstruction_{os.path.basename(vae_dir)}"] = vae(inputs["vae_pixels"]).reconstruction
    report["classes"] = [type(m).__module__ + "." + type(m).__name__ for m in (classifier, base, *vaes)]
    report["pre_quant_norm"] = [(m.config.pre_quant_norm, repr(m.pre_quant_norm)) for m in (classifier, base, *vaes)]

    # a model loaded as remote code saves and reloads the same way
    classifier.save_pretrained(resave_dir)
    again = AutoModelForImageClassification.from_pretrained(resave_dir, trust_remote_code=True).eval()
    out["vit_resaved_logits"] = again(inputs["vit_pixels"]).logits
    save_file({k: v.detach().contiguous() for k, v in out.items()}, tensors + ".out")
    with open(tensors + ".json", "w") as f:  # not stdout: transformers' trust prompt writes there
        json.dump(report, f)
    """
)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    torch.manual_seed(0)
    vit = VQViTForImageClassification(
        VQViTConfig(**VIT, num_labels=3, pre_quant_norm="layernorm", quantizer={"codebook_size": 16})
    )
    vit.train()(torch.randn(4, 3, 32, 32))  # touch the quantizer state so it is not all-initial
    vit.eval().save_pretrained(root / "vit")
    vaes = {}
    for norm in VAE_NORMS:
        vaes[norm] = VQVAEModel(
            VQVAEConfig(**VAE, pre_quant_norm=norm, quantizer={"codebook_size": 16, "affine": "ema"})
        )
        vaes[norm].train()(torch.rand(4, 3, 16, 16))
        vaes[norm].eval().save_pretrained(root / f"vae-{norm}")

    inputs = {"vit_pixels": torch.randn(2, 3, 32, 32), "vae_pixels": torch.rand(2, 3, 16, 16) * 2 - 1}
    save_file(inputs, root / "inputs.safetensors")
    with torch.no_grad():
        result = vit(inputs["vit_pixels"], output_hidden_states=True)
        expected = {
            "vit_logits": result.logits,
            "vit_indices": result.codebook_indices,
            **{f"vit_hidden_{i}": h for i, h in enumerate(result.hidden_states)},
            "vit_base_last_hidden": AutoModel.from_pretrained(root / "vit")
            .eval()(inputs["vit_pixels"])
            .last_hidden_state,
            "vit_active_codes": result.active_codes,
            **{f"reconstruction_vae-{norm}": vae(inputs["vae_pixels"]).reconstruction for norm, vae in vaes.items()},
        }

    workdir = tmp_path_factory.mktemp("elsewhere")  # cwd outside the repository
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        HF_HOME=str(workdir / "hf-home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1"
    )
    process = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(root / "vit"), str(root / "resaved"), str(root / "inputs.safetensors"),
         *(str(root / f"vae-{norm}") for norm in VAE_NORMS)],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    report = json.loads((root / "inputs.safetensors.json").read_text())
    return {"root": root, "report": report, "expected": expected, "got": load_file(root / "inputs.safetensors.out")}


def test_child_process_cannot_import_hf_vq(remote):
    assert remote["report"]["hf_vq_importable"] is False


def test_remote_code_stays_opt_in(remote):
    for name in ("AutoConfig", "AutoModel"):
        message = remote["report"][f"untrusted_{name}"]
        assert "contains custom code" in message and "trust_remote_code=True" in message


def test_remote_models_match_the_local_ones(remote):
    expected, got = remote["expected"], remote["got"]
    assert all(cls.startswith("transformers_modules.") for cls in remote["report"]["classes"])
    assert [c.rsplit(".", 1)[1] for c in remote["report"]["classes"]] == [
        "VQViTForImageClassification", "VQViTModel", "VQVAEModel", "VQVAEModel", "VQVAEModel"]
    assert [norm for norm, _ in remote["report"]["pre_quant_norm"]] == ["layernorm", "layernorm", *VAE_NORMS]
    assert [module.split("(")[0] for _, module in remote["report"]["pre_quant_norm"]] == [
        "LayerNorm", "LayerNorm", "Identity", "ChannelLayerNorm", "GroupNorm"]
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert torch.equal(got["vit_resaved_logits"], expected["vit_logits"])


@pytest.mark.parametrize("model", ["vit", "vae-none"])
def test_saved_code_is_flat_and_self_contained(remote, model):
    folder = remote["root"] / model
    files = sorted(p.name for p in folder.glob("*.py"))
    assert {"layer.py", "affine.py", "distributed.py", "search.py", "straight_through.py", "quantizer_config.py",
            "normalization.py", "outputs.py"} <= set(files)
    for name in files:
        tree = ast.parse((folder / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{name}: {'.' * node.level}{node.module}"
                if node.level == 1 and node.module:
                    assert (folder / f"{node.module}.py").is_file(), f"{name} imports missing .{node.module}"
        assert "hf_vq" not in get_imports(folder / name), name
    if model == "vit":  # the ViT code must load where diffusers is not installed
        assert not any("diffusers" in get_imports(folder / name) for name in files)


def test_quantizer_source_is_copied_unchanged(remote):
    import hf_vq.quantization.layer as layer

    assert (remote["root"] / "vit" / "layer.py").read_text() == open(layer.__file__).read()


def test_a_file_transformers_would_not_copy_fails_at_save_time(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "entry.py").write_text("from . import helper\n")
    (package / "helper.py").write_text("X = 1\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match=r"helper\.py"):
        write_remote_code(tmp_path / "out", [package / "entry.py"])


def test_register_for_auto_class_is_harmless_in_the_package(tmp_path):
    try:
        VQViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
        VQViTConfig.register_for_auto_class()
        assert VQViTForImageClassification._auto_class is None and VQViTConfig._auto_class is None
        VQViTForImageClassification(VQViTConfig(**VIT, quantizer={"codebook_size": 16})).save_pretrained(tmp_path)
    finally:
        VQViTForImageClassification._auto_class = VQViTConfig._auto_class = None
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModel"] == "modeling_vq_vit.VQViTModel"
