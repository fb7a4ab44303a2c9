"""Model cards: Hub metadata that huggingface_hub parses back (pipeline tag, library, datasets, model-index), the
training length, and usage snippets that run as pasted against the saved folder, with hf_vq and as remote code
in a process that cannot import hf_vq."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from hf_vq import VQImageProcessor, VQVAEConfig, VQVAEModel
from hf_vq.hub import render_model_card, save_model_card

from . import single_threaded  # noqa: F401  (autouse fixture)

VAE = dict(image_size=16, block_out_channels=[16, 16], layers_per_block=1, latent_channels=8, norm_num_groups=8,
           mid_block_add_attention=False, quantizer={"codebook_size": 8})
FACTS = {"steps": 938, "steps_per_epoch": 469, "train_examples": 60000, "train_seconds": 2471.4, "num_processes": 1}

BLOCKER = textwrap.dedent(
    """
    import sys

    class BlockHfVq:
        def find_spec(self, name, path=None, target=None):
            if name == "hf_vq" or name.startswith("hf_vq."):
                raise ImportError(f"{name} is blocked in this process")

    sys.meta_path.insert(0, BlockHfVq())
    """
)


def python_blocks(card: str) -> list[str]:
    """The ```python blocks of a card, in order."""
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def run_as_pasted(code: str, cwd, monkeypatch) -> None:
    """Run a snippet in this process (hf_vq importable) from `cwd`, as a user pasting it would."""
    monkeypatch.chdir(cwd)
    exec(compile(code, "<card snippet>", "exec"), {"__name__": "__main__"})


def run_without_hf_vq(code: str, cwd) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh, isolated interpreter that cannot import hf_vq, offline, from `cwd`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HOME=str(cwd / "hf-home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1",
               HF_VQ_DISABLE_NATIVE="1")
    process = subprocess.run([sys.executable, "-I", "-c", BLOCKER + code], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-4000:]
    return process


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    """A saved VQ-VAE folder as a training run leaves it (model, processor, card), named as its repo."""
    root = tmp_path_factory.mktemp("cards")
    torch.manual_seed(0)
    model = VQVAEModel(VQVAEConfig(**VAE)).eval()
    folder = root / "tiny-vq-vae"
    model.save_pretrained(folder)
    VQImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    card = render_model_card(model, model_name="tiny-vq-vae", repo_id="tiny-vq-vae", dataset_name="Fashion-MNIST",
                             dataset_id="zalando-datasets/fashion_mnist", dataset_split="test",
                             eval_results={"psnr": 21.5, "ssim": 0.71, "perplexity": 5.5, "active_codes": 0.75},
                             training_args=FACTS)
    save_model_card(card, folder)
    return folder


def test_metadata_parses_back_for_the_hub(vae_folder):
    data = ModelCard.load(vae_folder / "README.md").data
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "image-to-image", "apache-2.0")
    assert data.datasets == ["zalando-datasets/fashion_mnist"]
    results = {r.metric_type: r for r in data.eval_results}
    assert {k: r.metric_value for k, r in results.items()} == {"psnr": 21.5, "ssim": 0.71, "perplexity": 5.5,
                                                               "active_codes": 0.75}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results.values()} == {
        ("image-to-image", "zalando-datasets/fashion_mnist", "test")}
    assert data.model_name == "tiny-vq-vae"


def test_card_states_the_training_length(vae_folder):
    card = (vae_folder / "README.md").read_text()
    assert "- **Training:** 938 optimizer steps (2 epochs of 60,000 examples), 41 min 11 s of training on 1 process" \
        in card


def test_vae_card_snippets_run_as_pasted(vae_folder, monkeypatch):
    with_hf_vq, remote = python_blocks((vae_folder / "README.md").read_text())
    assert "to_diffusers()" in with_hf_vq and "trust_remote_code=True" in remote
    run_as_pasted(with_hf_vq, vae_folder.parent, monkeypatch)
    from PIL import Image

    saved = Image.open(vae_folder.parent / "reconstruction.png")
    assert saved.size == (16, 16) and saved.mode == "RGB"
    run_without_hf_vq(remote + "\nprint(type(processor).__name__, type(model).__name__)\n", vae_folder.parent)


def test_a_normalised_vae_card_does_not_offer_to_diffusers(tmp_path):
    model = VQVAEModel(VQVAEConfig(**VAE, pre_quant_norm="layernorm"))
    card = str(render_model_card(model, model_name="normed"))
    assert "to_diffusers" not in card and "AutoModel.from_pretrained(\"normed\")" in card


def test_readme_models_snippet_runs_and_loads_without_a_load_report(tmp_path, monkeypatch, capfd):
    """The README's Models example, as pasted: the classifier folder is pipeline-ready, and nothing it loads
    prints transformers' missing/unexpected-keys report."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Models\n"):readme.index("### vq-vit-tiny")]
    [snippet] = python_blocks(section)
    capfd.readouterr()
    run_as_pasted(snippet, tmp_path, monkeypatch)
    printed = capfd.readouterr()
    assert "LOAD REPORT" not in printed.out + printed.err and "MISSING" not in printed.out + printed.err
    assert (tmp_path / "vq-vit" / "preprocessor_config.json").is_file()
