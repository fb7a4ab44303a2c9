"""Reconstruction metrics on image batches, in torch: per-image mean squared error, PSNR and SSIM.

SSIM is Wang et al. (2004)'s: an 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03, population
(not sample) covariances, averaged over the positions where the window fits inside the image and over
channels, i.e. `skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=data_range, channel_axis=0)` (tested against it). skimage's default
(7×7 uniform window, sample covariances) gives other numbers; this is the definition papers report.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _check_images(predictions: torch.Tensor, references: torch.Tensor) -> None:
    if predictions.shape != references.shape or predictions.dim() != 4:
        raise ValueError(
            f"predictions and references must be image batches of one shape (batch_size, channels, height, width), "
            f"got {tuple(predictions.shape)} and {tuple(references.shape)}"
        )


def mean_squared_error(predictions: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(B,) mean over channels and pixels of (prediction − reference)²."""
    _check_images(predictions, references)
    return (predictions.double() - references.double()).pow(2).flatten(1).mean(1)


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """10·log10(data_range² / MSE) in dB; inf for MSE 0."""
    return 10.0 * math.log10(data_range**2 / mse) if mse > 0 else float("inf")


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(predictions: torch.Tensor, references: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(B,) SSIM of each image pair (Wang et al. 2004; see the module docstring), mean over channels."""
    _check_images(predictions, references)
    b, c, h, w = predictions.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels (its Gaussian window), got {h}×{w}"
        )
    x = predictions.double().reshape(b * c, 1, h, w)
    y = references.double().reshape(b * c, 1, h, w)
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, only where the window fits ("valid")
        return F.conv2d(F.conv2d(t, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(b, c, -1).mean(2).mean(1)


__all__ = ["SSIM_K1", "SSIM_K2", "SSIM_SIGMA", "SSIM_WINDOW", "mean_squared_error", "psnr_from_mse", "ssim"]
