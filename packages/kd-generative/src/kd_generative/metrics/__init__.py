"""Image-generation quality metrics: PSNR, SSIM, and a perceptual and a Fréchet distance in the space of a
small network trained here on photos bundled with scikit-image (LPIPS and Inception weights are not
available offline; these two numbers compare only with others from this toolkit).

A generator's parameters, MACs and CPU latency come from ``kd_core.metrics`` (``count_parameters``,
``count_macs``, ``measure_latency``).

Modules: ``psnr``, ``ssim``, ``perceptual``, ``frechet`` (via ``kd_core.frechet``), ``feature_net`` (the
network, trained once and cached), ``photos`` (its training crops), ``embedding``, ``validation``, ``quality``.
"""

from kd_generative.metrics.feature_net import FeatureNetwork, feature_network
from kd_generative.metrics.frechet import embed_images, frechet_image_distance
from kd_generative.metrics.perceptual import perceptual_distance
from kd_generative.metrics.psnr import psnr
from kd_generative.metrics.quality import image_quality
from kd_generative.metrics.ssim import ssim

__all__ = ["FeatureNetwork", "embed_images", "feature_network", "frechet_image_distance", "image_quality",
           "perceptual_distance", "psnr", "ssim"]
