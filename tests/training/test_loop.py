"""The training loop in-process (`hf_vq.training.train`): callbacks around each optimizer step, an early stop,
one LRU step per optimizer step, nothing written with save=False; and the task table's classification metric
against a brute-force count."""

from __future__ import annotations

import pytest
import torch

from hf_vq import VQViTConfig, VQViTForImageClassification
from hf_vq.experiments.ablations import PermutationBatches, TensorImages
from hf_vq.training import TASKS, VQ_VIT, VQVAE, Callback, PreparedData, evaluate, train
from hf_vq.training.config import EvalConfig, LoggingConfig, RunConfig, TrainConfig

TINY_VAE = dict(block_out_channels=[8], layers_per_block=1, latent_channels=4, norm_num_groups=4,
                mid_block_add_attention=False, image_size=8, quantizer={"codebook_size": 8, "replace_after": 2})


def tiny_data(size: int = 12, labels: bool = False, batch_sampler=None) -> PreparedData:
    images = torch.randint(0, 256, (size, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    classes = torch.arange(size) % 3
    return PreparedData(train=TensorImages(images, classes if labels else None, None),
                        test=TensorImages(images[:5], classes[:5] if labels else None, None),
                        class_names=["a", "b", "c"], mean=[0.5] * 3, std=[0.5] * 3, batch_sampler=batch_sampler)


def tiny_config(tmp_path, steps: int, **train) -> RunConfig:
    return RunConfig(task="vqvae", output_dir=str(tmp_path / "out"), model=dict(TINY_VAE),
                     train=TrainConfig(batch_size=4, max_steps=steps, lr=1e-3, **train),
                     eval=EvalConfig(eval_batch_size=4),
                     logging=LoggingConfig(log_with="none", progress_bar=False))


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None):
        self.begun, self.ended, self.lru_steps, self.stop_at = [], [], [], stop_at

    def on_step_begin(self, step, model):
        self.begun.append(step)
        self.lru_steps.append(int(model.quantizer.num_steps))

    def on_step_end(self, step, output):
        self.ended.append(step)
        assert torch.isfinite(output.loss)
        return step == self.stop_at


def test_callbacks_around_each_optimizer_step_and_nothing_written(tmp_path):
    recorder = Recorder()
    run = train(tiny_config(tmp_path, 7, optimization="alternated"), VQVAE, data=tiny_data(), callback=recorder,
                save=False)
    assert recorder.begun == list(range(7)) and recorder.ended == list(range(1, 8))
    assert recorder.lru_steps == list(range(7))  # one LRU step per optimizer step, none per forward
    assert int(run.model.quantizer.num_steps) == 7 and run.facts["steps"] == 7
    assert run.metrics["num_examples"] == 5 and {"mse", "psnr", "active_codes", "perplexity"} <= set(run.metrics)
    assert not (tmp_path / "out").exists()


def test_a_callback_stops_training_and_accumulation_keeps_one_step_per_optimizer_step(tmp_path):
    recorder = Recorder(stop_at=3)
    run = train(tiny_config(tmp_path, 10, gradient_accumulation_steps=2), VQVAE, data=tiny_data(), callback=recorder,
                save=False)
    assert recorder.begun == [0, 1, 2] and recorder.ended == [1, 2, 3]
    assert int(run.model.quantizer.num_steps) == 3 and run.facts["steps"] == 3


def test_permutation_batches_are_full_seeded_and_fresh_each_epoch():
    sampler = PermutationBatches(10, 4, seed=3)
    first, second = list(sampler), list(sampler)
    assert [b.tolist() for b in first] != [b.tolist() for b in second]
    for epoch in (first, second):
        assert len(epoch) == 2 and all(len(b) == 4 for b in epoch) and len(set(torch.cat(epoch).tolist())) == 8
    assert [b.tolist() for b in first] == [b.tolist() for b in PermutationBatches(10, 4, seed=3)]
    with pytest.raises(ValueError, match="batch_size 4 is larger than the 3 training images"):
        PermutationBatches(3, 4, seed=0)


def test_classification_accuracy_is_the_top1_share():
    torch.manual_seed(0)
    model = VQViTForImageClassification(VQViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=16,
                                                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                                    num_labels=3, quantizer={"codebook_size": 8})).eval()
    data = tiny_data(labels=True)
    batches = [{"pixel_values": torch.stack([data.test[i]["pixel_values"] for i in rows]),
                "labels": torch.stack([data.test[i]["labels"] for i in rows])} for rows in ([0, 1, 2], [3, 4])]

    class OneProcess:
        device = torch.device("cpu")

        def gather_for_metrics(self, x):
            return x

    result = evaluate(model, batches, OneProcess(), VQ_VIT, mean=data.mean, std=data.std)
    with torch.no_grad():
        predicted = torch.cat([model(**b).logits.argmax(-1) for b in batches])
    labels = torch.cat([b["labels"] for b in batches])
    assert result["accuracy"] == pytest.approx(float((predicted == labels).float().mean()))
    assert result["num_examples"] == 5 and "mse" not in result and set(TASKS) == {"vqvae", "vq_vit"}
