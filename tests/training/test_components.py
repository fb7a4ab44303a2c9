"""The reusable training parts in-process: data checks, optimizer groups and schedules, checkpoint folders,
evaluation metrics, augmentation."""

from __future__ import annotations

import types

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq import VQVAEConfig, VQVAEModel, VQViTConfig, VQViTForImageClassification, metrics
from hf_vq.training.augment import random_resized_crop
from hf_vq.training.checkpoint import MARKER, complete_checkpoints, config_changes, resolve_resume
from hf_vq.training.config import ConfigError, DataConfig, TrainConfig
from hf_vq.training.data import prepare_data
from hf_vq.training.evaluate import evaluate
from hf_vq.training.optim import build_optimizers, count_steps, parameter_groups
from hf_vq.training.tasks import VQVAE

TINY_VAE = dict(block_out_channels=[8], layers_per_block=1, latent_channels=4, norm_num_groups=4,
                mid_block_add_attention=False, image_size=8, quantizer={"codebook_size": 8, "affine": "learnable"})


@pytest.fixture
def image_dir(tmp_path):
    """A save_to_disk dataset of 12×12 RGB images with labels, train 6 / test 3."""
    def split(n):
        rng = np.random.default_rng(n)
        images = [Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(n)]
        features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
        return datasets.Dataset.from_dict({"image": images, "label": list(range(n))}, features=features)
    path = tmp_path / "ds"
    datasets.DatasetDict({"train": split(6), "test": split(3)}).save_to_disk(str(path))
    return path


def test_prepare_data_checks(image_dir, tmp_path):
    data = prepare_data(DataConfig(source=str(image_dir)), image_size=12, num_channels=3, need_labels=True)
    assert len(data.train) == 6 and data.class_names == [str(i) for i in range(6)]
    assert data.train[0]["pixel_values"].shape == (3, 12, 12)
    with pytest.raises(ConfigError, match=r"train images are 12×12 but model.image_size is 16; .*--data.resize true"):
        prepare_data(DataConfig(source=str(image_dir)), image_size=16, num_channels=3, need_labels=False)
    resized = prepare_data(DataConfig(source=str(image_dir), resize=True),
                           image_size=16, num_channels=1, need_labels=False)
    assert resized.test[0]["pixel_values"].shape == (1, 16, 16)
    with pytest.raises(ConfigError, match="has no column 'img'"):
        prepare_data(DataConfig(source=str(image_dir), image_column="img"),
                     image_size=12, num_channels=3, need_labels=False)
    with pytest.raises(ConfigError, match="has no column 'target'"):
        prepare_data(DataConfig(source=str(image_dir), label_column="target"),
                     image_size=12, num_channels=3, need_labels=True)
    with pytest.raises(ConfigError, match="data.label_column must name"):
        prepare_data(DataConfig(source=str(image_dir), label_column=None),
                     image_size=12, num_channels=3, need_labels=True)
    with pytest.raises(ConfigError, match="is not a directory"):
        prepare_data(DataConfig(source=str(tmp_path / "missing")), image_size=12, num_channels=3, need_labels=False)


def test_prepared_data_states_where_the_test_split_comes_from_and_what_was_converted(image_dir, tmp_path):
    data = prepare_data(DataConfig(source=str(image_dir)), image_size=12, num_channels=3, need_labels=True)
    assert data.facts == {"train_split": f"{str(image_dir)!r} split 'train'",
                          "test_split": f"{str(image_dir)!r} split 'test'"}
    folder = tmp_path / "folder"  # an image folder: no test split, RGB images for a 1-channel model
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((12, 12, 3), 20 * i, dtype=np.uint8)).save(folder / label / f"{i}.png")
    data = prepare_data(DataConfig(source=str(folder), max_train_samples=5), image_size=12, num_channels=1,
                        need_labels=True)
    assert len(data.train) == 5 and len(data.test) == 2 and data.train[0]["pixel_values"].shape[0] == 1
    assert data.facts["test_split"] == (f"a fixed-seed 10% of {str(folder)!r} split 'train', held out from training "
                                        "(the source has no test split)")
    assert data.facts["image_conversion"] == "images converted from PIL mode RGB to L (model.num_channels=1)"
    assert data.facts["subsets"].startswith("fixed-seed subsets: 5 train / 2 test examples")


def test_empty_dataset_is_refused(image_dir, tmp_path):
    ds = datasets.load_from_disk(str(image_dir))
    empty = tmp_path / "empty"
    nothing = ds["train"].filter(lambda _: False)
    datasets.DatasetDict({"train": nothing, "test": ds["test"]}).save_to_disk(str(empty))
    with pytest.raises(ConfigError, match="empty"):
        prepare_data(DataConfig(source=str(empty)), image_size=12, num_channels=3, need_labels=False)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(ConfigError, match="data.source"):
        prepare_data(DataConfig(source="someone/not-a-local-dataset"),
                     image_size=32, num_channels=3, need_labels=False)


def test_no_weight_decay_on_codebook_and_affine():
    config = VQViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32, num_labels=3,
                         quantizer={"codebook_size": 8, "affine": "learnable"})
    model = VQViTForImageClassification(config)
    decay, no_decay = parameter_groups(model, 0.05)
    codebook = {id(p) for p in model.quantizer.codebook_parameters()}
    assert len(codebook) == 3 and codebook <= {id(p) for p in no_decay["params"]}
    assert not codebook & {id(p) for p in decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert id(model.vit.embeddings.position_embeddings) in {id(p) for p in no_decay["params"]}
    every = {id(p) for p in model.parameters()}
    assert every == {id(p) for g in (decay, no_decay) for p in g["params"]}


def test_schedules_and_alternating_optimizer():
    model = VQVAEModel(VQVAEConfig(**TINY_VAE))
    cfg = TrainConfig(lr=1e-3, optimization="alternated", inner_steps=2, codebook_lr=5e-3)
    total, warmup, per_epoch = count_steps(TrainConfig(epochs=2.5, warmup_epochs=1, gradient_accumulation_steps=3), 10)
    assert (total, warmup, per_epoch) == (10, 4, 4)
    opt = build_optimizers(model, cfg, total_steps=10, warmup_steps=2)
    assert opt.alternating is not None and opt.alternating.inner_steps == 2
    assert opt.alternating.optimizer.param_groups[0]["lr"] == 0.0  # warmup starts at 0
    lrs = []
    for _ in range(10):
        lrs.append(opt.lrs())
        opt.optimizer.step()  # no gradients: no-ops, in the order the schedulers expect
        opt.alternating.optimizer.step()
        for s in opt.schedulers():
            s.step()
    assert lrs[2] == {"lr": pytest.approx(1e-3), "codebook_lr": pytest.approx(5e-3)}  # peak after warmup
    assert lrs[1]["lr"] == pytest.approx(5e-4) and lrs[-1]["lr"] < 1e-4  # linear warmup, cosine decay
    assert model.quantizer.alternating is opt.alternating
    assert set(opt.checkpoint_objects()) == {"scheduler", "alternating", "codebook_scheduler"}


def test_checkpoint_resolution_ignores_incomplete(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in (("step_000000004", True), ("step_000000008", True), ("step_000000012.tmp", False),
                           ("step_000000016", False), ("step_000000020.old.tmp", True)):
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / MARKER).write_text('{"step": 1}')
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_000000004", "step_000000008"]
    assert resolve_resume("latest", tmp_path).name == "step_000000008"
    assert resolve_resume(str(tmp_path), tmp_path / "elsewhere").name == "step_000000008"
    assert resolve_resume(str(root / "step_000000004"), tmp_path).name == "step_000000004"
    with pytest.raises(ConfigError, match="incomplete checkpoint"):
        resolve_resume(str(root / "step_000000012.tmp"), tmp_path)
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        resolve_resume(str(root / "step_000000016"), tmp_path)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resolve_resume("latest", tmp_path / "fresh")
    assert resolve_resume("auto", tmp_path).name == "step_000000008"
    assert resolve_resume("auto", tmp_path / "fresh") is None  # a fresh start


def test_config_changes_ignore_logging_settings():
    saved = {"train": {"lr": 1e-3, "batch_size": 8}, "eval": {"eval_every": 5}, "output_dir": "a"}
    now = {"train": {"lr": 1e-3, "batch_size": 16}, "eval": {"eval_every": 7}, "output_dir": "b"}
    assert config_changes(saved, now) == ["train.batch_size: 8 -> 16"]
    assert config_changes(None, now) == []


class _Accelerator:
    """The two methods `evaluate` needs, single process."""

    device = torch.device("cpu")

    def gather_for_metrics(self, x):
        return x


def test_evaluate_matches_hf_vq_metrics():
    torch.manual_seed(0)
    model = VQVAEModel(VQVAEConfig(**TINY_VAE)).eval()
    batches = [{"pixel_values": torch.randn(5, 3, 8, 8)}, {"pixel_values": torch.randn(3, 3, 8, 8)}]
    result = evaluate(model, batches, _Accelerator(), VQVAE, mean=[0.5] * 3, std=[0.5] * 3)
    with torch.no_grad():
        x = torch.cat([b["pixel_values"] for b in batches])
        z_e = model.quant_conv(model.encoder(x))
        out = model.quantizer(z_e)
        recon = model(x).reconstruction
    assert result["num_examples"] == 8
    assert result["perplexity"] == pytest.approx(metrics.perplexity(out.indices, 8), rel=1e-5)
    assert result["active_codes"] == pytest.approx(metrics.active_codes(out.indices, 8))
    expected_error = metrics.quantization_error(z_e, out.quantized, dim=1)
    assert result["quantization_error"] == pytest.approx(expected_error, rel=1e-5)
    assert result["mse"] == pytest.approx(float((recon - x).pow(2).mean()), rel=1e-5)
    mse01 = float(((recon * 0.5 + 0.5).clamp(0, 1) - (x * 0.5 + 0.5)).pow(2).mean())
    assert result["psnr"] == pytest.approx(10 * np.log10(1 / mse01), rel=1e-5)
    assert sum(result["code_histogram"]) == out.indices.numel()
    assert not model.training


def test_random_resized_crop_is_seeded_and_keeps_shape():
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    torch.manual_seed(1)
    a = random_resized_crop(x)
    torch.manual_seed(1)
    b = random_resized_crop(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    full = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(full, x, atol=1e-3)  # the identity crop


class _MainProcess:
    is_main_process = True

    def unwrap_model(self, model):
        return model


def test_save_final_and_push_in_one_commit(tmp_path, hub_calls):
    from hf_vq.data import image_processor
    from hf_vq.training.config import RunConfig
    from hf_vq.training.export import push, save_final
    from hf_vq.training.plots import code_usage

    model = VQVAEModel(VQVAEConfig(**TINY_VAE))
    cfg = RunConfig(output_dir=str(tmp_path / "out"), push_to_hub="me/tiny-vq")
    metrics = {"mse": 0.1, "psnr": 20.0, "perplexity": 3.0, "active_codes": 0.5, "quantization_error": 0.2,
               "loss": 0.3, "num_examples": 4, "code_histogram": [1, 0, 3, 0, 0, 0, 0, 0]}
    plot = code_usage(metrics["code_histogram"], tmp_path / "out" / "plots" / "code_usage.png")
    processor = image_processor(8, [0.5] * 3, [0.5] * 3)
    out = save_final(_MainProcess(), model, processor, cfg, metrics, [plot], {"steps": 1})
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
    card = (out / "README.md").read_text()
    assert "me/tiny-vq" in card and "value: 20.0" in card and "plots/code_usage.png" in card
    assert "| Active codes (fraction of K) | 0.5 |" in card and "| Codebook size K | 8 |" in card
    # what a run leaves next to the model: its log and config, and local state that is not uploaded
    (out / "train_log.jsonl").write_text("{}\n")
    (out / "training_config.yaml").write_text(cfg.to_yaml())
    for local in ("checkpoints/step_000000001/optimizer.bin", "tensorboard/events.out.tfevents.1",
                  "debug/rank0.safetensors"):
        (out / local).parent.mkdir(parents=True, exist_ok=True)
        (out / local).write_bytes(b"local")
    push(_MainProcess(), cfg)
    [(repo, files, kwargs)] = hub_calls.uploads
    assert repo == "me/tiny-vq" and kwargs["commit_message"] == "Upload hf_vq model trained with hf_vq.training"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(files) == {p for p in written if not p.startswith(("checkpoints/", "tensorboard/", "debug/"))}
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "plots/code_usage.png",
            "train_log.jsonl", "training_config.yaml", "eval_results.json"} <= set(files)
    assert files["README.md"] == (out / "README.md").read_bytes()  # the card save_final wrote, not a re-render


def test_preflight_refuses_a_push_that_cannot_happen(monkeypatch, tmp_path):
    """--push_to_hub is checked before training with one `HfApi.whoami` (intercepted: the Hub is unreachable
    here): offline mode, no token, a rejected or read-only token, a foreign namespace and an unreachable Hub each
    stop the run naming the fix and the command that uploads the folder later."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    from hf_vq.training.config import RunConfig
    from hf_vq.training.runtime import preflight

    def run(repo="me/model"):
        return preflight(RunConfig(push_to_hub=repo, output_dir=str(tmp_path / "out")))

    def whoami_is(result):
        def whoami(self, *args, **kwargs):
            if isinstance(result, BaseException):
                raise result
            return result
        monkeypatch.setattr(HfApi, "whoami", whoami)

    with pytest.raises(ConfigError, match="push_to_hub: repo_id must be 'name' or 'namespace/name'"):
        run("not a/valid/repo")
    response = types.SimpleNamespace(status_code=401, headers={}, request=None)
    retry = f"python -m hf_vq.hub push {tmp_path / 'out'} me/model"
    for result, message in [
        (ConnectionError("[Errno -2] Name or service not known"), "the Hub cannot be reached"),
        (LocalTokenNotFoundError("no token"), "no Hugging Face token found: log in with `hf auth login`"),
        (HfHubHTTPError("401 Unauthorized", response=response), "rejected \\(401\\)"),
        ({"name": "me", "orgs": [], "auth": {"accessToken": {"role": "read"}}}, "token is read-only"),
        ({"name": "you", "orgs": [{"name": "lab"}], "auth": {"accessToken": {"role": "write"}}},
         "user 'you' cannot create repos under 'me' \\(theirs: lab, you\\)"),
    ]:
        whoami_is(result)
        with pytest.raises(ConfigError, match=message) as error:
            run()
        assert str(error.value).startswith("push_to_hub 'me/model' cannot happen: ") and retry in str(error.value)
    whoami_is({"name": "me", "orgs": [{"name": "lab"}], "auth": {"accessToken": {"role": "write"}}})
    assert run() is None and run("lab/model") is None and run("model") is None  # the user's own namespace
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        run()


def test_a_failed_push_prints_one_line_and_the_retry_command_uploads_the_same_files(tmp_path, hub_calls, monkeypatch,
                                                                                       capsys):
    from huggingface_hub import HfApi

    from hf_vq.hub import main as hub_main
    from hf_vq.training.config import RunConfig
    from hf_vq.training.export import push

    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "README.md", "checkpoints/step_000000001/optimizer.bin"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(name)
    upload_folder = HfApi.upload_folder

    def unreachable(self, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "upload_folder", unreachable)
    cfg = RunConfig(output_dir=str(out), push_to_hub="me/run")
    assert push(_MainProcess(), cfg) is False
    printed = capsys.readouterr().out.strip()
    assert "\n" not in printed and f"the run is complete in {out}" in printed
    assert printed.endswith(f"upload it with: python -m hf_vq.hub push {out} me/run")
    retry = printed.split("upload it with: python -m hf_vq.hub ")[1].split()
    assert hub_main(retry) == 1  # still unreachable: one line, no traceback
    assert capsys.readouterr().err.strip() == (f"error: push of {out} to me/run failed: ConnectionError: [Errno -2] "
                                               "Name or service not known")
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)  # the Hub is back: the printed command uploads
    assert hub_main(retry) == 0
    [(repo, files, kwargs)] = hub_calls.uploads
    assert repo == "me/run" and set(files) == {"model.safetensors", "config.json", "README.md"}


def test_impossible_launches_stop_before_training(monkeypatch):
    """fp16 on CPU (Accelerate would train in fp32 and report fp16) and `accelerate launch --cpu --num_processes 2`
    (one process started: the environment its simple launcher exports) are refused before the Accelerator exists."""
    from hf_vq.training.config import RunConfig
    from hf_vq.training.runtime import check_launcher, make_accelerator

    with pytest.raises(ConfigError, match="mixed_precision fp16 needs a GPU; on CPU use bf16"):
        make_accelerator(RunConfig(mixed_precision="fp16"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch --mixed_precision fp16
    with pytest.raises(ConfigError, match="mixed_precision fp16 needs a GPU"):
        make_accelerator(RunConfig())
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    check_launcher()  # accelerate launch --cpu (one process)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # ... --num_processes 2
    with pytest.raises(ConfigError, match="starts a single process .* --multi_gpu --num_processes N"):
        check_launcher()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun / accelerate launch --multi_gpu: a real group
    check_launcher()


