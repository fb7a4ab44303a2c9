"""Evaluation on the test split: the task's metrics plus the codebook metrics of `hf_vq.metrics`.

Every rank evaluates its shard of the test loader; per-example values are gathered with
`accelerator.gather_for_metrics` (which drops the padding duplicates of the last batch), so the numbers are
those of the whole test split whatever the number of processes. Nothing is downloaded.

- The task's own (`Task.batch_metrics`, `Task.summarize`): VQ-VAE `mse` and `psnr`, VQ-ViT `accuracy`.
- Every task: `perplexity` (2^H of the code histogram of the whole split, §5.1), `active_codes` (fraction of
  the K codes used at least once on the split), `quantization_error` (mean over vectors of ½‖z_e − z_q‖²,
  the commitment distance), `loss` (the model's training loss, batch-mean weighted by batch size), and the
  per-code histogram for the usage plot.
- The collapse diagnostics of the (first) quantizer on this rank's first 16,384 test vectors z_e:
  `ze_effective_rank` (participation ratio of z_e's covariance), `codes_in_reach` (share of codes nearer to
  some z_e than the median quantization distance) and, with an affine, its scale/bias statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import metrics
from ..quantization import MultiCodebookQuantizer, find_quantizers, model_quantizers

MAX_JOINT_CODES = 2**20  # joint-code statistics of a residual/grouped quantizer up to this many K^M codes


@torch.no_grad()
def evaluate(model: nn.Module, loader, accelerator, task, mean: list[float], std: list[float]) -> dict:
    """Metrics of `model` on `loader` (an Accelerate-prepared test loader) for `task` (a `tasks.Task`).
    `mean`/`std` (per channel) map the model's pixels back to [0, 1]. Returns plain floats plus
    "code_histogram" (a list of K ints). Every rank must call it (it gathers). A residual or grouped quantizer's
    M codebooks: the quantization error is its output's, perplexity and active codes are the means over the
    codebooks (as its forward reports them), "code_histogram" sums the M histograms, and "joint_perplexity" /
    "joint_active_codes" count the K^M joint codes (the tuples of M indices) when K^M <= 2^20."""
    was_training = model.training
    model.eval()
    quantizer = model_quantizers(model)[0]
    codebook_size = quantizer.codebook_size  # K per codebook (implicit for FSQ/LFQ)
    members = find_quantizers(quantizer)  # its VectorQuantizers (none for FSQ/LFQ)
    codebooks = len(members) if isinstance(quantizer, MultiCodebookQuantizer) else 1  # the indices' trailing axis
    errors = []  # per quantizer call of the batch: (B,) quantization error per example

    def capture(module, args, output) -> None:
        z_e, z_q = args[0].float(), output.quantized.float()
        # ½‖z_e − z_q‖² per vector, averaged per example: hf_vq.metrics.quantization_error per image
        per_vector = 0.5 * (z_e - z_q).pow(2).sum(1 if module.channel_first else -1)
        errors.append(per_vector.reshape(per_vector.shape[0], -1).mean(1))

    handles = [vq.register_forward_hook(capture) for vq in model_quantizers(model)]
    histogram = torch.zeros(codebooks, codebook_size, dtype=torch.long)
    # M codebooks of K codes also form K^M joint codes (a residual VQ of 3 × 8 codes has 512, as a VQ of K = 512)
    joint_size = codebook_size**codebooks if 1 < codebooks and codebook_size**codebooks <= MAX_JOINT_CODES else None
    joint_histogram = torch.zeros(joint_size or 0, dtype=torch.long)
    radix = codebook_size ** torch.arange(codebooks)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=accelerator.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=accelerator.device).view(1, -1, 1, 1)
    sums, count = {}, 0
    diagnosed = members[0] if members else quantizer  # collapse diagnostics: the first codebook's inputs
    recorder = metrics.recorded_inputs(diagnosed)
    z_e = recorder.__enter__()
    try:
        for batch in loader:
            errors.clear()
            out = model(**batch)
            b = batch["pixel_values"].shape[0]
            per_example = {
                **task.batch_metrics(batch, out, lambda pixels: pixels * std_t + mean_t),
                "quantization_error": torch.stack(errors).mean(0),
                "loss": out.loss.float().expand(b),
            }
            codes = out.codebook_indices.reshape(b, -1, codebooks)
            per_example, codes = accelerator.gather_for_metrics((per_example, codes))
            for m in range(codebooks):
                histogram[m] += metrics.code_histogram(codes[..., m].cpu(), codebook_size)
            if joint_size:
                joint_histogram += metrics.code_histogram((codes.cpu() * radix).sum(-1), joint_size)
            for name, values in per_example.items():
                sums[name] = sums.get(name, 0.0) + float(values.double().sum())
            count += codes.shape[0]
    finally:
        for handle in handles:
            handle.remove()
        recorder.__exit__(None, None, None)
        model.train(was_training)

    means = {name: total / max(1, count) for name, total in sums.items()}
    shared = {name: means.pop(name) for name in ("quantization_error", "loss")}
    # perplexity / active codes of the split's histogram (hf_vq.metrics on the expanded histogram's indices)
    all_codes = [torch.repeat_interleave(torch.arange(codebook_size), h) for h in histogram]
    return {
        **task.summarize(means),
        "perplexity": sum(metrics.perplexity(c, codebook_size) for c in all_codes) / codebooks,
        "active_codes": sum(metrics.active_codes(c, codebook_size) for c in all_codes) / codebooks,
        **shared,
        **metrics.collapse_diagnostics(diagnosed, z_e.vectors()),
        "num_examples": count,
        "code_histogram": histogram.sum(0).tolist(),
        **({} if not joint_size else {
            "joint_perplexity": metrics.perplexity(torch.repeat_interleave(torch.arange(joint_size), joint_histogram),
                                                   joint_size),
            "joint_active_codes": float((joint_histogram > 0).float().mean())}),
    }


__all__ = ["evaluate"]
