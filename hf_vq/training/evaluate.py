"""Evaluation on the test split: the task metric plus the codebook metrics of `hf_vq.metrics`.

Every rank evaluates its shard of the test loader; per-example values are gathered with
`accelerator.gather_for_metrics` (which drops the padding duplicates of the last batch), so the numbers are
those of the whole test split whatever the number of processes. Nothing is downloaded.

- VQ-VAE: `mse` (mean squared error in the normalised pixel space the model is trained in, i.e. its
  reconstruction loss), `psnr` (dB, on images mapped back to [0, 1] and clipped, from the split's mean
  squared error: 10·log10(1 / MSE₀₁)).
- VQ-ViT: `accuracy` (top-1).
- Both: `perplexity` (2^H of the code histogram of the whole split, §5.1), `active_codes` (fraction of the
  K codes used at least once on the split), `quantization_error` (mean over vectors of ½‖z_e − z_q‖², the
  commitment distance), `loss` (the model's training loss, batch-mean weighted by batch size), and the
  per-code histogram for the usage plot.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import metrics
from ..quantization import find_quantizers


class _CaptureQuantizer:
    """Forward hook storing each quantizer call's (z_e, z_q) per-example quantization error."""

    def __init__(self, vq) -> None:
        self.vq = vq
        self.per_example: list[torch.Tensor] = []
        self.handle = vq.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        z_e, z_q = args[0].float(), output.quantized.float()
        dim = 1 if module.channel_first else -1
        # ½‖z_e − z_q‖² per vector, averaged per example: hf_vq.metrics.quantization_error per image
        per_vector = 0.5 * (z_e - z_q).pow(2).sum(dim)
        self.per_example.append(per_vector.reshape(per_vector.shape[0], -1).mean(1))


@torch.no_grad()
def evaluate(model: nn.Module, loader, accelerator, task: str, *, mean=None, std=None) -> dict:
    """Metrics of `model` on `loader` (an Accelerate-prepared test loader); `task` is "vqvae" or "vq_vit".
    `mean`/`std` (per channel) map the VQ-VAE's pixels back to [0, 1] for PSNR. Returns plain floats plus
    "code_histogram" (a list of K ints). Every rank must call it (it gathers)."""
    was_training = model.training
    model.eval()
    quantizers = find_quantizers(model)
    codebook_size = quantizers[0].codebook_size
    captures = [_CaptureQuantizer(vq) for vq in quantizers]
    histogram = torch.zeros(codebook_size, dtype=torch.long)
    sums = {"loss": 0.0, "error": 0.0, "error01": 0.0, "correct": 0.0, "qerr": 0.0, "n": 0}
    if mean is not None:
        mean_t = torch.tensor(mean, dtype=torch.float32, device=accelerator.device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=accelerator.device).view(1, -1, 1, 1)
    try:
        for batch in loader:
            for capture in captures:
                capture.per_example.clear()
            out = model(**batch)
            b = batch["pixel_values"].shape[0]
            stats = [out.loss.float().expand(b)]
            if task == "vqvae":
                x = batch["pixel_values"].float()
                recon = out.reconstruction.float()
                stats.append((recon - x).pow(2).flatten(1).mean(1))
                if mean is not None:
                    x01 = x * std_t + mean_t
                    r01 = (recon * std_t + mean_t).clamp(0, 1)
                    stats.append((r01 - x01).pow(2).flatten(1).mean(1))
            else:
                stats.append((out.logits.argmax(-1) == batch["labels"]).float())
            stats.append(torch.stack([c.per_example[-1] for c in captures]).mean(0))
            codes = out.codebook_indices.reshape(b, -1)
            stats, codes = accelerator.gather_for_metrics((torch.stack(stats, 1), codes))
            histogram += metrics.code_histogram(codes.cpu(), codebook_size)
            s = stats.double().sum(0).tolist()
            sums["loss"] += s[0]
            sums["qerr"] += s[-1]
            if task == "vqvae":
                sums["error"] += s[1]
                if mean is not None:
                    sums["error01"] += s[2]
            else:
                sums["correct"] += s[1]
            sums["n"] += stats.shape[0]
    finally:
        for capture in captures:
            capture.handle.remove()
        model.train(was_training)

    n = max(1, sums["n"])
    # perplexity / active codes of the split's histogram (hf_vq.metrics on the expanded histogram's indices)
    all_codes = torch.repeat_interleave(torch.arange(codebook_size), histogram)
    result = {
        "loss": sums["loss"] / n,
        "perplexity": metrics.perplexity(all_codes, codebook_size),
        "active_codes": metrics.active_code_ratio(all_codes, codebook_size),
        "quantization_error": sums["qerr"] / n,
        "num_examples": sums["n"],
    }
    if task == "vqvae":
        result["mse"] = sums["error"] / n
        if mean is not None:
            mse01 = sums["error01"] / n
            result["psnr"] = 10.0 * math.log10(1.0 / mse01) if mse01 > 0 else float("inf")
    else:
        result["accuracy"] = sums["correct"] / n
    result["code_histogram"] = histogram.tolist()
    return result


@torch.no_grad()
def reconstructions(model: nn.Module, dataset, count: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(originals, reconstructions) of `count` test images spread evenly over the split, in the model's pixel
    space."""
    was_training = model.training
    model.eval()
    try:
        count = min(count, len(dataset))
        picks = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
        x = torch.stack([dataset[i]["pixel_values"] for i in picks]).to(device)
        out = model(pixel_values=x)
        return x.cpu(), out.reconstruction.float().cpu()
    finally:
        model.train(was_training)


__all__ = ["evaluate", "reconstructions"]
