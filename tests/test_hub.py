"""hf_vq.hub: model cards and the one-commit push. No network: offline mode is forced and HfApi's upload is
intercepted (tests/conftest.py: hub_calls)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest
import yaml
from huggingface_hub import HfApi, ModelCard, metadata_load
from huggingface_hub.errors import OfflineModeIsEnabled

from hf_vq import hub
from hf_vq.hub import push_folder, push_to_hub, render_model_card, save_model_card

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Guard: every real HfApi request raises OfflineModeIsEnabled (the flag is read at import, so patch it too)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")


def _png(path: Path) -> Path:
    """A valid 1×1 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def vit():
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=3)
    return ViTForImageClassification(config), ViTImageProcessorPil(size={"height": 32, "width": 32})


@pytest.fixture
def plots(tmp_path):
    return [_png(tmp_path / "loss.png"), _png(tmp_path / "codebook_usage.png")]


EVAL = {"accuracy": 0.8125, "perplexity": 412.5, "active_codes": 0.875}
QUANTIZER = {"codebook_size": 512, "commitment_weight": 5.0, "beta": 0.995, "sync_nu": 0.01, "affine": "learnable",
             "replace_after": 20, "kmeans_init": True, "distance": "euclidean"}


def _card(model, plots, **kwargs):
    return render_model_card(
        model, model_name="tiny-vq-vit", repo_id="me/tiny-vq-vit", dataset_name="Fashion-MNIST",
        dataset_id="zalando-datasets/fashion_mnist", dataset_split="test", eval_results=EVAL,
        quantizer_settings=QUANTIZER, perplexity=412.5, active_codes=0.875,
        training_args={"learning_rate": 1e-3, "num_train_epochs": 2, "hub_token": "secret"}, plots=plots,
        tags=["fashion-mnist"], **kwargs)


def _metadata(readme: bytes) -> dict:
    text = readme.decode("utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


# ------------------------------------------------------------------------------------------------- tests


def test_offline_guard_blocks_real_requests():
    with pytest.raises(OfflineModeIsEnabled):
        HfApi(token="hf_fake").model_info("gpt2")


def test_push_one_commit_with_exact_files(vit, plots, hub_calls, tmp_path):
    model, processor = vit
    card = _card(model, plots)
    result = push_to_hub(model, "me/tiny-vq-vit", image_processor=processor, card=card, plots=plots,
                         commit_message="test upload", private=True)

    assert result.commit_url.endswith("/commit/0")
    assert hub_calls.create_repo == [("me/tiny-vq-vit", {"exist_ok": True, "private": True})]
    assert hub_calls.create_branch == []
    assert len(hub_calls.uploads) == 1
    repo_id, files, kwargs = hub_calls.uploads[0]
    assert repo_id == "me/tiny-vq-vit"
    assert kwargs == {"commit_message": "test upload", "revision": None}
    assert set(files) == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                          "plots/loss.png", "plots/codebook_usage.png"}
    assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    assert files["plots/loss.png"] == plots[0].read_bytes()

    # The weights are the model's, in safetensors.
    from safetensors.torch import load

    tensors = load(files["model.safetensors"])  # keys may be in the checkpoint's original (encoder.layer.N) format
    state = model.state_dict()
    assert len(tensors) == len(state)
    assert sum(t.numel() for t in tensors.values()) == sum(t.numel() for t in state.values())
    assert (tensors["classifier.weight"] == state["classifier.weight"]).all()

    # README metadata parses (two ways) and carries what we passed.
    readme = files["README.md"]
    (tmp_path / "README.md").write_bytes(readme)
    raw = metadata_load(tmp_path / "README.md")
    assert raw == _metadata(readme)
    assert raw["library_name"] == "transformers"
    assert raw["license"] == "apache-2.0"
    assert raw["pipeline_tag"] == "image-classification"
    assert {"hf_vq", "vector-quantization", "vq-vit", "fashion-mnist"} <= set(raw["tags"])
    assert raw["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert raw["metrics"] == list(EVAL)
    (entry,) = raw["model-index"]
    assert entry["name"] == "tiny-vq-vit"
    (result_entry,) = entry["results"]
    assert result_entry["task"]["type"] == "image-classification"
    assert result_entry["dataset"] == {"name": "Fashion-MNIST", "type": "zalando-datasets/fashion_mnist",
                                       "split": "test"}
    assert {m["type"]: m["value"] for m in result_entry["metrics"]} == EVAL

    parsed = ModelCard(readme.decode("utf-8"))
    assert {r.metric_type: r.metric_value for r in parsed.data.eval_results} == EVAL
    assert parsed.data.library_name == "transformers"

    body = parsed.text
    for needle in ("## Quantizer settings", "| Codebook size K | `512` |", "α, commitment weight", "| `5` |",
                   "β, codebook share", "`0.995`", "ν, synchronized update (eq 21) | `0.01` |",
                   "Affine re-parameterisation (§4.1) | `learnable` |",
                   "LRU replacement after (steps, 0 = off) | `20` |",
                   "k-means initialisation (A.7) | `yes` |", "## Codebook usage", "| Perplexity 2^H | 412.5 |",
                   "## Evaluation results", "| Accuracy | 0.8125 |", "`learning_rate`",
                   "import hf_vq", 'pipeline("image-classification", model="me/tiny-vq-vit")',
                   "![loss](plots/loss.png)", "![codebook usage](plots/codebook_usage.png)",
                   "@inproceedings{huh2023straightening",
                   "Huh, Minyoung and Cheung, Brian and Agrawal, Pulkit and Isola, Phillip"):
        assert needle in body, needle
    assert "secret" not in body and "hub_token" not in body
    # A plain ViT has no remote code: no trust_remote_code snippet.
    assert "trust_remote_code" not in body


def test_push_renders_a_card_when_none_given(vit, plots, hub_calls):
    model, _ = vit
    push_to_hub(model, "tiny", plots=plots, create_repo=False, revision="main")
    assert hub_calls.create_repo == [] and hub_calls.create_branch == []
    (_, files, kwargs) = hub_calls.uploads[0]
    assert kwargs["revision"] == "main"
    assert set(files) == {"config.json", "model.safetensors", "README.md", "plots/loss.png",
                          "plots/codebook_usage.png"}
    meta = _metadata(files["README.md"])
    assert meta["library_name"] == "transformers" and "hf_vq" in meta["tags"] and "model-index" not in meta
    text = files["README.md"].decode()
    assert "# tiny" in text and "![loss](plots/loss.png)" in text and 'from_pretrained("tiny")' in text


def test_revision_branch_and_extra_files(vit, tmp_path, hub_calls):
    model, _ = vit
    extra = tmp_path / "eval.json"
    extra.write_text('{"accuracy": 0.5}')
    push_to_hub(model, "me/x", card="---\nlicense: mit\n---\n# x\n", extra_files={"results/eval.json": extra},
                revision="v1")
    assert hub_calls.create_branch == [("me/x", {"branch": "v1", "exist_ok": True})]
    (_, files, kwargs) = hub_calls.uploads[0]
    assert kwargs["revision"] == "v1"
    assert set(files) == {"config.json", "model.safetensors", "README.md", "results/eval.json"}
    assert files["README.md"].decode().startswith("---\nlicense: mit\n---")


@pytest.mark.parametrize("repo_id", ["a/b/c", "", "has space", "-lead", "x--y", "ns/name.git", None, 3])
def test_bad_repo_id_raises_before_anything(vit, plots, hub_calls, monkeypatch, repo_id):
    model, _ = vit
    saves = []
    monkeypatch.setattr(type(model), "save_pretrained", lambda self, *a, **k: saves.append(a), raising=True)
    with pytest.raises(ValueError, match="repo_id"):
        push_to_hub(model, repo_id, plots=plots)
    assert saves == [] and hub_calls.create_repo == [] and hub_calls.uploads == []


def test_missing_plot_raises_before_anything(vit, plots, hub_calls, monkeypatch, tmp_path):
    model, _ = vit
    saves = []
    monkeypatch.setattr(type(model), "save_pretrained", lambda self, *a, **k: saves.append(a), raising=True)
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        push_to_hub(model, "me/x", plots=[*plots, missing])
    with pytest.raises(FileNotFoundError, match="gone.json"):
        push_to_hub(model, "me/x", extra_files={"gone.json": tmp_path / "gone.json"})
    with pytest.raises(ValueError, match="pickle"):
        push_to_hub(model, "me/x", extra_files={"optimizer.pt": plots[0]})
    with pytest.raises(ValueError, match="share the file name"):
        push_to_hub(model, "me/x", plots=[plots[0], plots[0]])
    assert saves == [] and hub_calls.create_repo == [] and hub_calls.uploads == []


def test_model_without_save_pretrained(hub_calls):
    with pytest.raises(TypeError, match="save_pretrained"):
        push_to_hub(object(), "me/x")
    assert hub_calls.create_repo == []


def test_pickle_from_save_pretrained_is_refused_before_network(hub_calls):
    class Pickler:
        def save_pretrained(self, directory):
            (Path(directory) / "config.json").write_text("{}")
            (Path(directory) / "model.safetensors").write_bytes(b"x")
            (Path(directory) / "pytorch_model.bin").write_bytes(b"x")

    with pytest.raises(RuntimeError, match="pytorch_model.bin"):
        push_to_hub(Pickler(), "me/x", card="# x\n")
    assert hub_calls.create_repo == [] and hub_calls.uploads == []


def test_eval_results_need_a_dataset_and_finite_values(vit):
    model, _ = vit
    with pytest.raises(ValueError, match="dataset"):
        render_model_card(model, model_name="m", eval_results={"accuracy": 0.5})
    with pytest.raises(ValueError, match="accuracy"):
        render_model_card(model, model_name="m", dataset_name="d", eval_results={"accuracy": float("nan")})
    card = render_model_card(model, model_name="m", dataset_name="local digits",
                             eval_results={"eval_accuracy": 0.5, "eval_runtime": 1.0, "epoch": 3})
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"accuracy": 0.5}
    assert card.data.datasets is None  # a display name only is not a Hub dataset id


def test_template_choice_and_lookup(vit, tmp_path):
    model, _ = vit
    vae_card = render_model_card(model, model_name="m", template="vq_vae")
    assert "VQ autoencoder" in vae_card.text
    assert "VQ-ViT image classifier" in render_model_card(model, model_name="m").text
    custom = tmp_path / "custom.md.j2"
    custom.write_text("---\n{{ card_data }}\n---\n# {{ model_name }} custom\n")
    card = render_model_card(model, model_name="m", template=custom)
    assert card.text.strip() == "# m custom" and card.data.library_name == "transformers"
    with pytest.raises(FileNotFoundError, match="nope"):
        render_model_card(model, model_name="m", template="nope")
    assert hub.find_template("vq_vit") == Path(hub.__file__).resolve().parent / "model_cards" / "vq_vit.md.j2"


def test_save_model_card(vit, plots, tmp_path):
    model, _ = vit
    card = _card(model, plots)
    readme = save_model_card(card, tmp_path / "out", plots=plots)
    assert readme == tmp_path / "out" / "README.md"
    assert metadata_load(readme)["library_name"] == "transformers"
    assert (tmp_path / "out" / "plots" / "loss.png").read_bytes() == plots[0].read_bytes()


def test_hf_vq_models_push_with_remote_code(hub_calls, tmp_path):
    """The real VQ models: a loud failure (not a skip) until hf_vq exports them."""
    import hf_vq

    missing = [name for name in ("VQViTConfig", "VQViTForImageClassification", "VQVAEConfig", "VQVAEModel")
               if not hasattr(hf_vq, name)]
    assert not missing, f"hf_vq does not export {missing} yet: wire the models into hf_vq/__init__.py"

    vit = hf_vq.VQViTForImageClassification(hf_vq.VQViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, quantizer={"codebook_size": 16, "replace_after": 20}))
    vae = hf_vq.VQVAEModel(hf_vq.VQVAEConfig(
        image_size=16, block_out_channels=[32, 32], layers_per_block=1, latent_channels=8, norm_num_groups=8,
        mid_block_add_attention=False, quantizer={"codebook_size": 16}))
    plot = _png(tmp_path / "recon.png")

    for model, repo, tag in ((vit, "me/vq-vit", "vq-vit"), (vae, "me/vq-vae", "vq-vae")):
        push_to_hub(model, repo, plots=[plot])
        (_, files, _) = hub_calls.uploads[-1]
        assert {"config.json", "model.safetensors", "README.md", "plots/recon.png"} <= set(files)
        others = set(files) - {"config.json", "model.safetensors", "README.md", "plots/recon.png"}
        assert others and all(name.endswith(".py") and "/" not in name for name in others), others  # remote code
        assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)]
        meta = _metadata(files["README.md"])
        assert meta["library_name"] == "transformers" and tag in meta["tags"]
        text = files["README.md"].decode()
        assert "| Codebook size K | `16` |" in text and "trust_remote_code=True" in text
        assert "Affine re-parameterisation (§4.1) | `learnable` |" in text
        if tag == "vq-vit":  # pushed without an image processor: the snippet must not load one
            assert 'AutoModelForImageClassification.from_pretrained("me/vq-vit", trust_remote_code=True)' in text
            assert "AutoImageProcessor" not in text and "preprocessor_config.json" not in files
    assert "VQ autoencoder" in text and 'AutoModel.from_pretrained("me/vq-vae")' in text


def test_codebook_usage_is_a_deprecated_alias_of_perplexity_and_active_codes(vit):
    model, _ = vit
    with pytest.warns(FutureWarning, match="codebook_usage=.*deprecated"):
        old = render_model_card(model, model_name="m", codebook_usage={"perplexity": 412.5, "active_codes": 0.875})
    assert str(old) == str(render_model_card(model, model_name="m", perplexity=412.5, active_codes=0.875))
    assert "| Active codes (fraction of K) | 0.875 |" in old.text and "| Perplexity 2^H | 412.5 |" in old.text
    assert "## Codebook usage" not in render_model_card(model, model_name="m").text


def test_push_folder_sends_the_folder_but_what_it_leaves_out(vit, tmp_path, hub_calls):
    model, processor = vit
    folder = tmp_path / "run"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "README.md").write_text("# run\n![loss](plots/loss.png)\n")
    (folder / "plots").mkdir()
    _png(folder / "plots" / "loss.png")
    (folder / "checkpoints" / "step_000000004").mkdir(parents=True)
    (folder / "checkpoints" / "step_000000004" / "random_states_0.pkl").write_bytes(b"pickle")
    push_folder(folder, "me/run", ignore_patterns=["checkpoints/"], commit_message="a run")
    [(repo_id, files, kwargs)] = hub_calls.uploads
    assert repo_id == "me/run" and kwargs == {"commit_message": "a run", "revision": None}
    assert set(files) == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                          "plots/loss.png"}
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    with pytest.raises(RuntimeError, match=r"pickle files \['checkpoints/step_000000004/random_states_0.pkl'\]"):
        push_folder(folder, "me/run")  # without the ignore pattern: refused before any request
    (folder / "plots" / "loss.png").unlink()
    with pytest.warns(UserWarning, match=r"README.md links \['plots/loss.png'\]"):
        push_folder(folder, "me/run", ignore_patterns=["checkpoints/"])
    (folder / "model.safetensors").unlink()
    with pytest.raises(RuntimeError, match="no .safetensors file"):
        push_folder(folder, "me/run", ignore_patterns=["checkpoints/"])
    assert len(hub_calls.uploads) == 2 and len(hub_calls.create_repo) == 2
