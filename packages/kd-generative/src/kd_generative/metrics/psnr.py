"""Peak signal-to-noise ratio, per image: PSNR = 10 log10(L² / MSE), L = high − low of ``data_range``."""

from __future__ import annotations

import torch

from kd_generative.metrics.validation import DataRange, check_image_pair, check_reduction

__all__ = ["psnr"]


def psnr(images: torch.Tensor, reference: torch.Tensor, *, data_range: DataRange = (-1.0, 1.0),
         reduction: str = "mean") -> torch.Tensor:
    """PSNR in dB of each image of ``images`` ``[N, C, H, W]`` against the same-index image of ``reference``.

    The MSE is over each image's C × H × W values; identical images give ``inf``. ``reduction="none"`` returns
    the ``[N]`` per-image values, ``"mean"`` their mean (the mean of per-image PSNRs, as most papers report).
    """
    reduction = check_reduction(reduction)
    x, y, (low, high) = check_image_pair(images, reference, data_range)
    mse = (x - y).pow(2).flatten(1).mean(1)
    values = 10.0 * torch.log10((high - low) ** 2 / mse)
    return values.mean() if reduction == "mean" else values
