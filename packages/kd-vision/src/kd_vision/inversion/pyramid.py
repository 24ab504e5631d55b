"""NaturalInversion's Feature Transfer Pyramid (FTP): the teacher's multi-scale features of the current
synthetic batch, decoded top-down and added back into the image.

Kim et al., "NaturalInversion: Data-Free Image Synthesis Improving Real-World Consistency", AAAI 2022,
arXiv:2306.16661. Given teacher feature maps f_1 (shallowest) … f_L (deepest) of the detached
generator output x₀:

    p_L = f_L;  p_l = conv3×3(conv1×1(resize(p_{l+1}, size of f_l)) + f_l)   for l = L−1 … 1
    x₁  = tanh(conv1×1(x₀ + resize(conv1×1(p_1), size of x₀)))

The teacher's features are read through kd-core taps (``TapSet``), never by modifying the teacher.
``default_pyramid_taps`` picks, for each spatial resolution, the output of the last BatchNorm layer
at that resolution, ordered from the shallowest (largest) map to the deepest.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from kd_core.taps import TapSet
from torch import nn

from kd_vision.inversion.priors import batchnorm_layers

__all__ = ["FeatureTransferPyramid", "default_pyramid_taps", "feature_shapes"]


def feature_shapes(teacher: nn.Module, taps: Sequence[str], example: torch.Tensor) -> list[tuple[int, ...]]:
    """The shapes ``[C, H, W]`` of ``taps`` for one eval-mode, no-grad forward of ``example`` (batch of 2+)."""
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            out = TapSet(teacher, taps).run(lambda m, x: m(x), teacher, example)
    finally:
        teacher.train(was_training)
    return [tuple(out[t].shape[1:]) for t in taps]


def default_pyramid_taps(teacher: nn.Module, example: torch.Tensor) -> list[str]:
    """For each spatial size, the last BatchNorm2d output at that size, shallowest (largest) first."""
    paths = [name for name, module in batchnorm_layers(teacher) if isinstance(module, nn.BatchNorm2d)]
    if not paths:
        raise ConfigError("ftp_taps", "teacher feature maps [B, C, H, W] (the teacher has no BatchNorm2d)",
                          [], hint="name them with synthesis.ftp_taps, or turn the FTP off")
    shapes = feature_shapes(teacher, paths, example)
    last_at_size: dict[tuple[int, ...], str] = {}
    for path, shape in zip(paths, shapes):
        last_at_size[tuple(shape[1:])] = path
    return [last_at_size[size] for size in sorted(last_at_size, key=lambda s: -s[0] * s[1])]


class FeatureTransferPyramid(nn.Module):
    """Top-down decoder of teacher feature maps into an image-sized correction, then ``tanh``.

    ``feature_channels`` lists the channels of the tapped maps, shallowest first. ``forward(x, features)``
    takes the generator output ``x`` ``[B, C, H, W]`` and the maps in the same order.
    """

    def __init__(self, feature_channels: Sequence[int], image_channels: int) -> None:
        super().__init__()
        channels = list(feature_channels)
        if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
            raise ConfigError("feature_channels", "one or more positive channel counts", channels)
        if not isinstance(image_channels, int) or image_channels < 1:
            raise ConfigError("image_channels", "a positive integer", image_channels)
        self.feature_channels = channels
        # level l (0 = shallowest) receives the decoded map of level l+1
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i + 1], channels[i], 1) for i in range(len(channels) - 1))
        self.refine = nn.ModuleList(nn.Conv2d(channels[i], channels[i], 3, padding=1)
                                    for i in range(len(channels) - 1))
        self.to_image = nn.Conv2d(channels[0], image_channels, 1)
        self.mix = nn.Conv2d(image_channels, image_channels, 1)

    def pyramid(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The decoded correction ``[B, image_channels, *size]``."""
        if len(features) != len(self.feature_channels):
            raise ConfigError("features", f"{len(self.feature_channels)} feature maps", len(features))
        decoded = features[-1]
        for level in range(len(features) - 2, -1, -1):
            target = features[level]
            upsampled = F.interpolate(decoded, size=target.shape[-2:], mode="nearest")
            decoded = self.refine[level](self.lateral[level](upsampled) + target)
        correction = self.to_image(decoded)
        if tuple(correction.shape[-2:]) != tuple(size):
            correction = F.interpolate(correction, size=size, mode="bilinear", align_corners=False)
        return correction

    def forward(self, images: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``tanh(conv1×1(images + pyramid(features)))``."""
        return torch.tanh(self.mix(images + self.pyramid(features, tuple(images.shape[-2:]))))
