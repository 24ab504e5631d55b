"""An LPIPS-style perceptual distance (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018) in the space of the feature network trained here.

Per stage l of the network: unit-normalise each position's feature vector over channels, take the squared
difference between the two images summed over channels, average over positions; sum over stages:
d(x, y) = Σ_l mean_{h,w} ‖f̂_l(x)_{hw} − f̂_l(y)_{hw}‖². The layer weights are uniform (all ones): LPIPS learns
per-channel weights from human similarity judgements (its BAPPS data), which are not available here. Values
are comparable only within this toolkit (same feature network), never with published LPIPS numbers.
"""

from __future__ import annotations

import torch

from kd_generative.metrics.embedding import feature_batches, resolve_feature_net
from kd_generative.metrics.feature_net import FeatureNetwork
from kd_generative.metrics.validation import DataRange, check_image_pair, check_reduction

__all__ = ["perceptual_distance"]

EPS = 1e-10


def _unit(features: torch.Tensor) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)


def perceptual_distance(images: torch.Tensor, reference: torch.Tensor, *, data_range: DataRange = (-1.0, 1.0),
                        feature_net: FeatureNetwork | None = None, reduction: str = "mean",
                        batch_size: int = 256) -> torch.Tensor:
    """Perceptual distance of each image of ``images`` ``[N, C, H, W]`` (C = 1 or 3) to the same-index
    ``reference`` image; 0 for identical images, larger for less alike ones (at most 4 per stage).

    ``feature_net`` defaults to ``feature_network()``. Differentiable with respect to the images (the network's
    weights are frozen). ``reduction="none"`` returns ``[N]`` values on the network's device, ``"mean"`` their mean.
    """
    reduction = check_reduction(reduction)
    x, y, data_range = check_image_pair(images, reference, data_range, channels=(1, 3))
    net = resolve_feature_net(feature_net)
    distances = []
    pairs = zip(feature_batches(net, x, data_range, batch_size), feature_batches(net, y, data_range, batch_size))
    for (_, fx), (_, fy) in pairs:
        distances.append(sum((_unit(a) - _unit(b)).pow(2).sum(dim=1).mean(dim=(1, 2)) for a, b in zip(fx, fy)))
    values = torch.cat(distances)
    return values.mean() if reduction == "mean" else values
