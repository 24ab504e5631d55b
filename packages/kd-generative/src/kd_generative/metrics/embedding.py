"""Images through the metric feature network: the default network, its device, batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from kd_generative.metrics.feature_net import FeatureNetwork, feature_network
from kd_generative.metrics.validation import DataRange, to_unit_rgb

__all__ = ["feature_batches", "resolve_feature_net"]


def resolve_feature_net(feature_net: FeatureNetwork | None) -> FeatureNetwork:
    """``feature_net``, or the default ``feature_network()`` (trained once, then read from the cache)."""
    return feature_network() if feature_net is None else feature_net


def feature_batches(feature_net: FeatureNetwork, images: torch.Tensor, data_range: DataRange,
                    batch_size: int = 256) -> Iterator[tuple[slice, list[torch.Tensor]]]:
    """Each slice of ``batch_size`` checked images and its per-stage features, on the network's device.

    The images are mapped from ``data_range`` to [0, 1] (grey repeated to RGB) and moved to the network; the
    network is not moved.
    """
    device = next(feature_net.parameters()).device
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        batch = to_unit_rgb(images[part], data_range).to(device=device, dtype=torch.float32)
        yield part, feature_net(batch)
