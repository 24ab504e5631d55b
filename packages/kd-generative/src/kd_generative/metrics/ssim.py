"""Structural similarity (Wang, Bovik, Sheikh & Simoncelli, "Image Quality Assessment: From Error Visibility to
Structural Similarity", IEEE TIP 2004), per image, in torch (CPU or GPU).

The standard setting: an 11 × 11 Gaussian window with σ = 1.5 (normalised), K1 = 0.01, K2 = 0.03,
C1 = (K1 L)², C2 = (K2 L)² with L = high − low of ``data_range``; local statistics are window-weighted
(no N/(N−1) correction) and only windows fully inside the image count (a "valid" filter). Each image's value is
the mean of its SSIM map over channels and positions. SSIM's luminance term is not shift-invariant, so the
values are first shifted by ``low`` to [0, L] (the paper's non-negative intensities): images in [-1, 1] and the
same images in [0, 1] get the same SSIM. On [0, L] images this equals scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``; the paper's
MATLAB code also downsamples large images first, which is not done here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kd_generative.metrics.validation import DataRange, check_image_pair, check_reduction

__all__ = ["gaussian_window", "ssim"]

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The normalised 1-D Gaussian ``[size]`` (centred; the 2-D window is its outer product)."""
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2.0
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype)


def _local_means(maps: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable valid Gaussian filtering of every channel of ``maps`` ``[N, K, H, W]``."""
    channels = maps.shape[1]
    rows = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return F.conv2d(F.conv2d(maps, rows, groups=channels), cols, groups=channels)


def ssim(images: torch.Tensor, reference: torch.Tensor, *, data_range: DataRange = (-1.0, 1.0),
         reduction: str = "mean") -> torch.Tensor:
    """SSIM of each image of ``images`` ``[N, C, H, W]`` (H, W ≥ 11) against the same-index ``reference`` image.

    1 for identical images, lower (down to −1) for dissimilar ones. ``reduction="none"`` returns the ``[N]``
    per-image values, ``"mean"`` their mean.
    """
    reduction = check_reduction(reduction)
    x, y, (low, high) = check_image_pair(images, reference, data_range, min_size=WINDOW)
    span = high - low
    x, y = x - low, y - low
    c1, c2 = (K1 * span) ** 2, (K2 * span) ** 2
    channels = x.shape[1]
    window = gaussian_window(dtype=x.dtype, device=x.device)
    stats = _local_means(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)
    values = (numerator / denominator).flatten(1).mean(1)
    return values.mean() if reduction == "mean" else values
