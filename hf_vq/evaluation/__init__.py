"""hf_vq's metrics as Hugging Face `evaluate` modules, loadable offline from the installed package.

    import evaluate
    from hf_vq.evaluation import module_path
    psnr = evaluate.load(module_path("psnr"))            # or hf_vq.evaluation.load("psnr")
    psnr.compute(predictions=reconstructions, references=images)   # (C, H, W) arrays in [0, 1]

Modules (one folder each, `<name>/<name>.py`, the layout `evaluate.load(path)` reads): `accuracy`; `psnr` and
`ssim` (Wang et al.'s Gaussian 11×11, σ 1.5; see `image_metrics.py`) for reconstructions; `codebook`
(perplexity and active codes of code indices, `codebook_size=K`); `ze_effective_rank` (of quantizer inputs).
The training scripts' evaluation computes its numbers with them (hf_vq/training/evaluate.py), so the model
cards' results are theirs. `compute_metrics(model)` is a ready `compute_metrics` for `transformers.Trainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MODULES = ("accuracy", "codebook", "psnr", "ssim", "ze_effective_rank")
_HERE = Path(__file__).resolve().parent


def module_path(name: str) -> str:
    """Folder of the `evaluate` module `name` (one of `MODULES`), for `evaluate.load(module_path(name))`."""
    if name not in MODULES:
        raise ValueError(f"Unknown hf_vq evaluate module {name!r}; available: {', '.join(MODULES)}")
    return str(_HERE / name)


def load(name: str, **kwargs):
    """`evaluate.load(module_path(name), keep_in_memory=True, **kwargs)`: no download, no cache files."""
    import evaluate

    return evaluate.load(module_path(name), **{"keep_in_memory": True, **kwargs})


def compute_metrics(model) -> Callable:
    """A `compute_metrics` for `transformers.Trainer` evaluating a VQ-ViT classifier `model`: `accuracy` from the
    logits and, when the predictions also carry the `codebook_indices` (evaluate with
    `ignore_keys=CODEBOOK_IGNORE_KEYS`, since the config leaves them out of Trainer's predictions by default),
    the codebook's `perplexity` and `active_codes` on the evaluation set."""
    codebook_size = model.config.quantizer["codebook_size"]
    accuracy, codebook = load("accuracy"), load("codebook")

    def compute(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        with_codes = isinstance(predictions, (tuple, list))
        logits, codes = (predictions[0], predictions[1]) if with_codes else (predictions, None)
        results = accuracy.compute(predictions=np.asarray(logits).argmax(-1), references=eval_prediction.label_ids)
        if codes is not None:
            codes = np.asarray(codes).reshape(len(codes), -1)
            results.update(codebook.compute(predictions=codes[codes[:, 0] != -100], codebook_size=codebook_size))
        return results

    return compute


# Trainer.evaluate(ignore_keys=...): everything but the logits and the code indices (Trainer pads with -100).
CODEBOOK_IGNORE_KEYS = ["quantizer_loss", "commitment_loss", "perplexity", "active_codes", "hidden_states",
                        "attentions"]

__all__ = ["CODEBOOK_IGNORE_KEYS", "MODULES", "compute_metrics", "load", "module_path"]
