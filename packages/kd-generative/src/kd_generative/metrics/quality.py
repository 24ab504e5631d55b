"""All the image metrics of a student generator's images against reference images, in one call."""

from __future__ import annotations

import torch
from kd_core.errors import ConfigError

from kd_generative.metrics.embedding import resolve_feature_net
from kd_generative.metrics.feature_net import FeatureNetwork
from kd_generative.metrics.frechet import frechet_image_distance
from kd_generative.metrics.perceptual import perceptual_distance
from kd_generative.metrics.psnr import psnr
from kd_generative.metrics.ssim import WINDOW, ssim
from kd_generative.metrics.validation import DataRange, check_image_pair

__all__ = ["image_quality"]

NAMES = ("student_images", "reference_images")


def image_quality(student_images: torch.Tensor, reference_images: torch.Tensor,
                  feature_net: FeatureNetwork | None = None, *, data_range: DataRange = (-1.0, 1.0)
                  ) -> dict[str, float]:
    """Mean ``psnr`` (dB), ``ssim``, ``perceptual`` distance and ``frechet`` distance of paired image batches.

    ``student_images`` and ``reference_images``: ``[N, C, H, W]`` of one shape, N ≥ 2, C = 1 or 3, H and W ≥ 11,
    values inside ``data_range`` (default (-1, 1); pass (0, 1) for images in [0, 1]). The image at index i of one
    is compared with index i of the other (PSNR, SSIM, perceptual); the Fréchet distance compares the two sets.
    ``feature_net`` defaults to ``feature_network()``. Every input is checked before the network is loaded.
    ``psnr`` is the mean of per-image PSNRs, so one pair of identical images makes it ``inf``.
    """
    x, y, data_range = check_image_pair(student_images, reference_images, data_range, min_size=WINDOW,
                                        names=NAMES, channels=(1, 3))
    if len(x) < 2:
        raise ConfigError(NAMES[0], "at least 2 images (the Fréchet distance fits a covariance)", len(x))
    net = resolve_feature_net(feature_net)
    with torch.no_grad():
        return {
            "psnr": float(psnr(x, y, data_range=data_range)),
            "ssim": float(ssim(x, y, data_range=data_range)),
            "perceptual": float(perceptual_distance(x, y, data_range=data_range, feature_net=net)),
            "frechet": frechet_image_distance(x, y, data_range=data_range, feature_net=net),
        }
