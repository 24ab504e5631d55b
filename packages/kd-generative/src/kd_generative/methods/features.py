"""Feature distillation between generators of different widths: an L1 distance after a learned 1×1 projection
from the student's channels to the teacher's, and the default U-Net taps it reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.losses import l1
from kd_core.signals import Forward, default_forward
from kd_core.taps import TapSet
from torch import nn

__all__ = ["ProjectedL1", "decoder_taps", "tap_channels"]


class ProjectedL1(nn.Module):
    """``‖φ(F_s) − F_t‖₁`` (mean over elements), with ``φ`` a learned 1×1 convolution from ``student_channels``
    to ``teacher_channels`` (no bias). It trains with the student and is discarded afterwards."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        for name, value in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "a positive integer channel count", value)
        self.projection = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The L1 distance between the projected student features ``[B, C_s, H, W]`` and ``teacher``."""
        return l1(self.projection(student), teacher)


def decoder_taps(depth: int) -> list[str]:
    """The BatchNorm outputs of the U-Net's decoder levels 1 … depth − 1 (``up.i.2``: before the decoder dropout;
    level 0 is the output image, which the output term already matches)."""
    return [f"up.{i}.2" for i in range(1, depth)]


def tap_channels(model: nn.Module, taps: Sequence[str], batch: Mapping[str, Any],
                 forward: Forward = default_forward) -> dict[str, int]:
    """The channel count of every tap of ``model`` on ``batch`` (one eval-mode forward without gradients).
    An unknown tap is a ``TapError`` listing the nearest module names."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = TapSet(model, list(taps)).run(forward, model, batch)
    finally:
        model.train(was_training)
    return {tap: int(out[tap].shape[1]) for tap in taps}
