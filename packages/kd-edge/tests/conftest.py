"""Fixtures kd-edge's tests share: ``make_unet``, a tiny Pix2Pix-shaped U-Net that describes itself through
``kd_core.structure`` (kd-edge never imports a domain's models; ``tests/`` at the repository root runs the
same tools on kd-generative's generator)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from kd_core.structure import UNetLevel, UNetStructure
from torch import nn


class TinyUNet(nn.Module):
    """Level ``i``: ``down[i]`` (LeakyReLU–Conv 4/2/1–BatchNorm; the outermost is a bare Conv, the innermost has
    no norm) and ``up[i]`` (ReLU–ConvTranspose 4/2/1–BatchNorm; the outermost ends in Tanh); skip first."""

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int], bias: bool = True) -> None:
        super().__init__()
        depth = len(widths)
        down: list[nn.Module] = []
        up: list[nn.Module] = []
        for i, width in enumerate(widths):
            if i == 0:
                down.append(nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 1, bias=bias)))
            else:
                layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], width, 4, 2, 1, bias=bias)]
                down.append(nn.Sequential(*layers, *([nn.BatchNorm2d(width)] if i < depth - 1 else [])))
            up_in = width if i == depth - 1 else 2 * width
            if i == 0:
                up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(up_in, out_channels, 4, 2, 1), nn.Tanh()))
            else:
                up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(up_in, widths[i - 1], 4, 2, 1, bias=bias),
                                        nn.BatchNorm2d(widths[i - 1])))
        self.down = nn.ModuleList(down)
        self.up = nn.ModuleList(up)

    @property
    def depth(self) -> int:
        """Levels held now."""
        return len(self.down)

    def unet_structure(self) -> UNetStructure:
        """``down.i`` / ``up.i`` per level, skip first."""
        return UNetStructure(tuple(UNetLevel(f"down.{i}", f"up.{i}") for i in range(self.depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image in, image out."""
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        h = self.up[len(skips) - 1](skips[-1])
        for level in range(len(skips) - 2, -1, -1):
            h = self.up[level](torch.cat([skips[level], h], dim=1))
        return h


@pytest.fixture(scope="session")
def make_unet() -> Callable[..., TinyUNet]:
    """``make_unet(depth=4, base=8, in_channels=1, out_channels=1, bias=True, seed=0)``: an eval-mode
    ``TinyUNet`` of widths ``base · min(2^i, 8)``, initialised from ``seed``."""
    def make(depth: int = 4, base: int = 8, in_channels: int = 1, out_channels: int = 1, bias: bool = True,
             seed: int = 0) -> TinyUNet:
        torch.manual_seed(seed)
        widths = [base * min(2**i, 8) for i in range(depth)]
        return TinyUNet(in_channels, out_channels, widths, bias=bias).eval()
    return make
