"""Fréchet distance between two image sets in the feature network's space (an FID stand-in, not FID).

Each image is embedded as the spatial mean of the network's last stage (64 numbers); the two sets' Gaussian
fits are compared with ``kd_core.frechet.frechet_distance`` (float64, symmetric eigen-decompositions; an
n × m SVD when a set has no more images than 64). Few images bias the value upwards, as with FID: compare
numbers computed from the same counts. Comparable only within this toolkit (same network).
"""

from __future__ import annotations

import torch
from kd_core.errors import ConfigError
from kd_core.frechet import frechet_distance

from kd_generative.metrics.embedding import feature_batches, resolve_feature_net
from kd_generative.metrics.feature_net import FeatureNetwork
from kd_generative.metrics.validation import DataRange, check_data_range, check_images

__all__ = ["embed_images", "frechet_image_distance"]


def embed_images(images: torch.Tensor, *, data_range: DataRange = (-1.0, 1.0),
                 feature_net: FeatureNetwork | None = None, batch_size: int = 256,
                 argument: str = "images") -> torch.Tensor:
    """The ``[N, 64]`` float64 CPU embeddings of ``images`` ``[N, C, H, W]`` (C = 1 or 3), without gradients."""
    data_range = check_data_range(data_range)
    images = check_images(images, argument, data_range, channels=(1, 3))
    net = resolve_feature_net(feature_net)
    with torch.no_grad():
        return torch.cat([features[-1].mean(dim=(2, 3)).double().cpu()
                          for _, features in feature_batches(net, images, data_range, batch_size)])


def frechet_image_distance(images: torch.Tensor, reference: torch.Tensor, *, data_range: DataRange = (-1.0, 1.0),
                           feature_net: FeatureNetwork | None = None, batch_size: int = 256) -> float:
    """FD between the embeddings of ``images`` ``[N, C, H, W]`` and ``reference`` ``[M, C', H', W']`` (N, M ≥ 2;
    counts and sizes may differ). 0 for identical sets."""
    for name, value in (("images", images), ("reference", reference)):
        if isinstance(value, torch.Tensor) and value.ndim == 4 and len(value) < 2:
            raise ConfigError(name, "at least 2 images (a Fréchet distance fits a covariance)", len(value))
    net = resolve_feature_net(feature_net)
    a = embed_images(images, data_range=data_range, feature_net=net, batch_size=batch_size, argument="images")
    b = embed_images(reference, data_range=data_range, feature_net=net, batch_size=batch_size,
                     argument="reference")
    return frechet_distance(a.numpy(), b.numpy())
