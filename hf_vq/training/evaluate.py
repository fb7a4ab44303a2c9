"""Evaluation on the test split: the task's metrics and the codebook metrics, computed by hf_vq's `evaluate`
modules (`hf_vq.evaluation`), so the model cards' results are those modules' numbers.

Every rank evaluates its shard of the test loader; the inputs of the modules and per-example values are gathered
with `accelerator.gather_for_metrics` (which drops the padding duplicates of the last batch), so the numbers are
those of the whole test split whatever the number of processes. Nothing is downloaded.

- The task's own (`Task.evaluation_inputs`): VQ-VAE `psnr` and `ssim` (on [0, 1] images), VQ-ViT `accuracy`;
  and `Task.batch_metrics` averaged: VQ-VAE `mse` in the normalised pixel space (its reconstruction loss).
- Every task: `perplexity` and `active_codes` of the code indices of the whole split (`codebook` module, §5.1),
  `quantization_error` (mean over vectors of ½‖z_e − z_q‖², the commitment distance), `loss` (the model's
  training loss, batch-mean weighted by batch size), and the per-code histogram for the usage plot.
- The collapse diagnostics of the (first) quantizer on this rank's first 16,384 test vectors z_e:
  `ze_effective_rank` (`ze_effective_rank` module: participation ratio of z_e's covariance), `codes_in_reach`
  (share of codes nearer to some z_e than the median quantization distance) and, with an affine, its scale/bias
  statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import evaluation, metrics
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
    modules = {}
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
                **task.batch_metrics(batch, out),
                "quantization_error": torch.stack(errors).mean(0),
                "loss": out.loss.float().expand(b),
            }
            codes = out.codebook_indices.reshape(b, -1, codebooks)
            inputs = {**task.evaluation_inputs(batch, out, lambda pixels: pixels * std_t + mean_t),
                      **{f"codebook_{m}": {"predictions": codes[..., m]} for m in range(codebooks)}}
            per_example, inputs = accelerator.gather_for_metrics((per_example, inputs))
            for name, arguments in inputs.items():
                if name not in modules:
                    modules[name] = evaluation.load(name.rsplit("_", 1)[0] if name.startswith("codebook_") else name)
                modules[name].add_batch(**{k: v.cpu().numpy() for k, v in arguments.items()})
            for m in range(codebooks):
                histogram[m] += metrics.code_histogram(inputs[f"codebook_{m}"]["predictions"].cpu(), codebook_size)
            if joint_size:
                gathered = torch.stack([inputs[f"codebook_{m}"]["predictions"].cpu() for m in range(codebooks)], -1)
                joint_histogram += metrics.code_histogram((gathered * radix).sum(-1), joint_size)
            count += inputs["codebook_0"]["predictions"].shape[0]
            for name, values in per_example.items():
                sums[name] = sums.get(name, 0.0) + float(values.double().sum())
    finally:
        for handle in handles:
            handle.remove()
        recorder.__exit__(None, None, None)
        model.train(was_training)

    means = {name: total / max(1, count) for name, total in sums.items()}
    shared = {name: means.pop(name) for name in ("quantization_error", "loss")}
    results = {name: module.compute(**({"codebook_size": codebook_size} if name.startswith("codebook_") else {}))
               for name, module in modules.items()}
    vectors = z_e.vectors()
    diagnostics = metrics.collapse_diagnostics(diagnosed, vectors)
    if vectors.shape[0] >= 2:
        rank = evaluation.load("ze_effective_rank")
        diagnostics.update(rank.compute(predictions=vectors.reshape(-1, vectors.shape[-1]).numpy()))
    # M codebooks (residual / grouped): the means over the codebooks, as the quantizer's forward reports them
    usage = [results.pop(f"codebook_{m}") for m in range(codebooks)]
    return {
        **{key: value for result in results.values() for key, value in result.items()},
        **means,
        "perplexity": sum(u["perplexity"] for u in usage) / codebooks,
        "active_codes": sum(u["active_codes"] for u in usage) / codebooks,
        **shared,
        **diagnostics,
        "num_examples": count,
        "code_histogram": histogram.sum(0).tolist(),
        **({} if not joint_size else {
            "joint_perplexity": metrics.perplexity(torch.repeat_interleave(torch.arange(joint_size), joint_histogram),
                                                   joint_size),
            "joint_active_codes": float((joint_histogram > 0).float().mean())}),
    }


__all__ = ["evaluate"]
