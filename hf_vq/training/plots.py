"""PNG plots of a run (matplotlib, Agg backend): training curves, code usage, VQ-VAE reconstructions."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def training_curves(records: list[dict], path: str | os.PathLike, task_metric: str | None = None) -> Path:
    """Loss, perplexity and active codes over optimizer steps (train batches and test-split evals), the task
    metric when given, and the collapse diagnostics the evals recorded (z_e rank, codes in reach, affine scale)."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    panels = {"loss": "loss", "perplexity": "perplexity", "active_codes": "active codes (fraction of K)"}
    if task_metric:
        panels[task_metric] = task_metric
    # collapse diagnostics of the test-split evals (hf_vq.metrics.collapse_diagnostics)
    for key, title in (
        ("ze_effective_rank", "z_e effective rank"),
        ("codes_in_reach", "codes in reach (fraction of K)"),
        ("affine_scale_mean", "affine scale (mean)"),
    ):
        if any(key in r for r in evals):
            panels[key] = title
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels.items()):
        for kind, rows, style in (("train (batch)", train, dict(lw=1, color="C0")),
                                  ("test split", evals, dict(marker="o", ms=4, color="C1"))):
            if any(key in r for r in rows):
                ax.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r], label=kind, **style)
        if key in ("loss", "mse") and train and all(r.get(key, 1) > 0 for r in train):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def code_usage(histogram: list[int], path: str | os.PathLike) -> Path:
    """Code-usage histogram on the test split: selections per code, codes sorted by use."""
    counts = np.sort(np.asarray(histogram))[::-1]
    total = max(1, counts.sum())
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.bar(np.arange(len(counts)), counts / total, width=1.0)
    active = int((counts > 0).sum())
    ax.set_title(f"code usage on the test split: {active}/{len(counts)} codes used")
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("fraction of selections")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def reconstruction_grid(
    originals: torch.Tensor, reconstructions: torch.Tensor, mean, std, path: str | os.PathLike
) -> Path:
    """Rows of originals above their reconstructions, mapped back to [0, 1] with the data normalisation."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (originals.float() * std + mean).clamp(0, 1)
    r = (reconstructions.float() * std + mean).clamp(0, 1)
    n = x.shape[0]
    cols = min(8, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.3 * cols, 1.4 * 2 * rows), squeeze=False)
    for i in range(rows * cols):
        for k, images in enumerate((x, r)):
            ax = axes[2 * (i // cols) + k, i % cols]
            ax.axis("off")
            if i < n:
                img = images[i].permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                          vmin=0, vmax=1, interpolation="nearest")
                if i % cols == 0:
                    ax.set_title("original" if k == 0 else "reconstruction", fontsize=7, loc="left")
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def reconstruction_plot(model, data, cfg, plot_dir: Path) -> Path:
    """`plot_dir/reconstructions.png`: the grid of `eval.num_reconstructions` test images spread evenly over
    the split (a VQ-VAE `model`, in eval mode for the call)."""
    count = min(cfg.eval.num_reconstructions, len(data.test))
    picks = torch.linspace(0, len(data.test) - 1, count).round().long().tolist()
    x = torch.stack([data.test[i]["pixel_values"] for i in picks]).to(model.device)
    was_training = model.training
    model.eval()
    try:
        recon = model(pixel_values=x).reconstruction
    finally:
        model.train(was_training)
    return reconstruction_grid(x.cpu(), recon.float().cpu(), data.mean, data.std, plot_dir / "reconstructions.png")


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["code_usage", "reconstruction_grid", "reconstruction_plot", "training_curves"]
