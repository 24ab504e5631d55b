"""Convolution blocks shared by the talking-face generator and the lip-sync expert."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AudioEncoder", "ConvBlock", "Residual", "UpBlock", "count_residual_blocks"]


class ConvBlock(nn.Sequential):
    """Conv2d -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """``relu(bn(conv3x3(x)) + x)``: a residual block that keeps the width and size (what a compact
    student removes)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the convolved input back."""
        return torch.relu(self.norm(self.conv(x)) + x)


class UpBlock(nn.Sequential):
    """ConvTranspose2d -> BatchNorm -> ReLU (stride 2 doubles the size; ``grow_from_one`` makes 1x1 -> 3x3)."""

    def __init__(self, cin: int, cout: int, grow_from_one: bool = False) -> None:
        conv = (nn.ConvTranspose2d(cin, cout, 3, 1, 0) if grow_from_one
                else nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1))
        super().__init__(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _stage(block: nn.Module, channels: int, residuals: int) -> nn.Sequential:
    return nn.Sequential(block, *(Residual(channels) for _ in range(residuals)))


class AudioEncoder(nn.Module):
    """A mel window ``(B, 1, 80, 16)`` -> ``(B, out, 1, 1)``: strides (3,1), 3, (3,2) take 80x16 to 3x3, a
    valid 3x3 conv to 1x1; ``residuals`` residual blocks after each strided stage."""

    def __init__(self, width: int, out: int, residuals: int = 1) -> None:
        super().__init__()
        a = width
        self.layers = nn.Sequential(
            _stage(ConvBlock(1, a), a, residuals),
            _stage(ConvBlock(a, 2 * a, 3, (3, 1), 1), 2 * a, residuals),
            _stage(ConvBlock(2 * a, 4 * a, 3, 3, 1), 4 * a, residuals),
            _stage(ConvBlock(4 * a, 8 * a, 3, (3, 2), 1), 8 * a, residuals),
            ConvBlock(8 * a, out, 3, 1, 0),
            ConvBlock(out, out, 1, 1, 0),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Encode the mel window."""
        return self.layers(mel)


def count_residual_blocks(model: nn.Module) -> int:
    """How many :class:`Residual` blocks ``model`` holds."""
    return sum(isinstance(m, Residual) for m in model.modules())
