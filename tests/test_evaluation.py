"""hf_vq's `evaluate` modules: the math against references (skimage's SSIM, the PSNR formula, hf_vq.metrics),
batching, offline loading in a process without network, and `compute_metrics` with a real `transformers.Trainer`."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from hf_vq import VQViTConfig, VQViTForImageClassification, metrics
from hf_vq.evaluation import CODEBOOK_IGNORE_KEYS, MODULES, compute_metrics, load, module_path
from hf_vq.evaluation.image_metrics import ssim


@pytest.fixture(scope="module", autouse=True)
def single_threaded():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def noisy_pair(shape, data_range=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape) * data_range
    y = np.clip(x + 0.15 * data_range * rng.standard_normal(shape), 0, data_range)
    return y.astype(np.float32), x.astype(np.float32)


@pytest.mark.parametrize("shape,data_range", [((3, 1, 28, 28), 1.0), ((2, 3, 32, 32), 1.0), ((2, 3, 16, 21), 255.0),
                                              ((1, 1, 11, 11), 1.0)])
def test_ssim_is_skimages_gaussian_ssim(shape, data_range):
    predictions, references = noisy_pair(shape, data_range)
    expected = [structural_similarity(p, r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=data_range, channel_axis=0) for p, r in zip(predictions, references)]
    per_image = ssim(torch.from_numpy(predictions), torch.from_numpy(references), data_range)
    assert np.allclose(per_image.numpy(), expected, rtol=1e-6, atol=1e-9)
    result = load("ssim").compute(predictions=predictions, references=references, data_range=data_range)
    assert result["ssim"] == pytest.approx(float(np.mean(expected)), rel=1e-6)
    identical = load("ssim").compute(predictions=references, references=references, data_range=data_range)
    assert identical["ssim"] == pytest.approx(1.0)


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11×11 pixels"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="of one shape"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16))


def test_psnr_is_that_of_the_mean_squared_error_over_all_images():
    predictions, references = noisy_pair((4, 3, 8, 8))
    mse = np.mean((predictions.astype(np.float64) - references) ** 2)
    assert load("psnr").compute(predictions=predictions, references=references)["psnr"] == pytest.approx(
        10 * np.log10(1 / mse), rel=1e-9)
    assert load("psnr").compute(predictions=predictions * 255, references=references * 255, data_range=255.0)[
        "psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    assert load("psnr").compute(predictions=references, references=references)["psnr"] == float("inf")


def test_batches_add_up_to_one_compute():
    predictions, references = noisy_pair((6, 1, 12, 12))
    for name in ("psnr", "ssim"):
        module = load(name)
        for start in (0, 2, 5):
            stop = {0: 2, 2: 5, 5: 6}[start]
            module.add_batch(predictions=predictions[start:stop], references=references[start:stop])
        assert module.compute() == pytest.approx(load(name).compute(predictions=predictions, references=references))


def test_codebook_usage_and_rank_match_hf_vq_metrics():
    codes = torch.randint(0, 12, (5, 7), generator=torch.Generator().manual_seed(0))
    result = load("codebook").compute(predictions=codes.numpy(), codebook_size=16)
    assert result == pytest.approx({"perplexity": metrics.perplexity(codes, 16),
                                    "active_codes": metrics.active_codes(codes, 16)})
    with pytest.raises(ValueError, match="codebook_size must be"):
        load("codebook").compute(predictions=codes.numpy())
    with pytest.raises(ValueError, match=r"\[0, codebook_size=8\)"):
        load("codebook").compute(predictions=codes.numpy(), codebook_size=8)
    z = torch.randn(200, 6) * torch.tensor([3.0, 1, 1, 0.1, 0.1, 0.1])
    assert load("ze_effective_rank").compute(predictions=z.numpy())["ze_effective_rank"] == pytest.approx(
        metrics.effective_rank(z), rel=1e-5)
    assert load("accuracy").compute(predictions=[1, 2, 3, 4], references=[1, 2, 0, 0]) == {"accuracy": 0.5}


def test_modules_load_offline_without_network(tmp_path):
    code = textwrap.dedent(
        """
        import socket, sys
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import evaluate
        from hf_vq.evaluation import MODULES, module_path
        for name in MODULES:
            module = evaluate.load(module_path(name))
            print(name, type(module).__name__)
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    process = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert [line.split()[0] for line in process.stdout.splitlines()] == list(MODULES)
    with pytest.raises(ValueError, match="Unknown hf_vq evaluate module 'fid'"):
        module_path("fid")


def test_compute_metrics_with_a_real_trainer(tmp_path):
    import datasets  # a dependency of hf_vq
    from transformers import Trainer, TrainingArguments

    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(20, 1, 8, 8, generator=gen), torch.arange(20) % 3
    data = datasets.Dataset.from_dict({"pixel_values": images.numpy(), "labels": labels.numpy()}).with_format("torch")
    torch.manual_seed(0)
    model = VQViTForImageClassification(VQViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16,
                                                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                                    num_labels=3, quantizer={"codebook_size": 16}))
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=8, report_to="none", use_cpu=True,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, eval_dataset=data, compute_metrics=compute_metrics(model))
    plain = trainer.evaluate()
    with_codes = trainer.evaluate(ignore_keys=CODEBOOK_IGNORE_KEYS)

    model.eval()
    with torch.no_grad():
        out = model(images)
    accuracy = float((out.logits.argmax(-1) == labels).float().mean())
    assert plain["eval_accuracy"] == pytest.approx(accuracy) and "eval_perplexity" not in plain
    assert with_codes["eval_accuracy"] == pytest.approx(accuracy)
    assert with_codes["eval_perplexity"] == pytest.approx(metrics.perplexity(out.codebook_indices, 16), rel=1e-5)
    assert with_codes["eval_active_codes"] == pytest.approx(metrics.active_codes(out.codebook_indices, 16))
