"""A small residual CNN (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, basic
blocks) for pruning tests: a stem, one flat ``nn.Sequential`` of blocks named ``blocks``, and a head.

A block whose stride is 1 and whose width does not change has an identity shortcut, so its input and
output shapes match and depth pruning may drop it; the first block of a wider stage has a 1×1
projection shortcut and may not be dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["BasicBlock", "ResNet", "build_resnet"]


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus a shortcut (identity, or 1×1 conv + BN), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual add of the two-conv branch and the shortcut."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """stem → blocks → global average pool → linear classifier."""

    def __init__(self, in_channels: int, classes: int, widths: Sequence[int], blocks_per_stage: Sequence[int]
                 ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        previous = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(previous, width, stride))
                previous = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(previous, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes]``."""
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


def build_resnet(in_channels: int = 3, classes: int = 10, widths: Sequence[int] = (16, 32),
                 blocks_per_stage: Sequence[int] = (2, 2)) -> ResNet:
    """A residual CNN with one stage per entry of ``widths`` (stages after the first downsample by 2)."""
    widths, blocks_per_stage = list(widths), list(blocks_per_stage)
    if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ConfigError("widths", "a non-empty list of positive integers", widths)
    if len(blocks_per_stage) != len(widths) or not all(isinstance(b, int) and b >= 1 for b in blocks_per_stage):
        raise ConfigError("blocks_per_stage", f"{len(widths)} positive integers (one per stage)", blocks_per_stage)
    for name, value in (("in_channels", in_channels), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, "a positive integer", value)
    return ResNet(in_channels, classes, widths, blocks_per_stage)
