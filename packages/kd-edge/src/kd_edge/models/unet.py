"""A small pix2pix-style U-Net generator: strided 4×4 convolutions down, ConvTranspose2d up, and a
concatenation skip at every level (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017, generator of §3.2 / appendix 6.1.1).

Level ``i`` (0 = outermost) owns ``down[i]`` (halves the resolution) and ``up[i]`` (doubles it). The
decoder of level ``i < depth - 1`` reads ``cat([down_i output, up_{i+1} output])``; the innermost
level reads only its own encoder output. As in pix2pix, the outermost and innermost encoder layers
have no norm (``innermost_norm=True`` keeps one, which cutting inner layers needs, see
``kd_edge.prune.unet_cut``). Flat ``ModuleList``s, not recursion, so that every layer has a stable
name (``down.3.1``) for taps, pruning records and sensitivity reports.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["UNetGenerator", "build_unet", "unet_widths"]


def unet_widths(depth: int, base: int, max_mult: int) -> list[int]:
    """Encoder output widths per level: ``base · min(2^i, max_mult)``."""
    return [base * min(2**i, max_mult) for i in range(depth)]


class UNetGenerator(nn.Module):
    """Encoder ``down``, decoder ``up`` (both ``ModuleList``s indexed by level) with concat skips."""

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int], innermost_norm: bool = False
                 ) -> None:
        super().__init__()
        depth = len(widths)
        self.depth = depth
        down: list[nn.Module] = []
        up: list[nn.Module] = []
        for i, width in enumerate(widths):
            if i == 0:
                down.append(nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 1)))
            else:
                layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], width, 4, 2, 1)]
                if i < depth - 1 or innermost_norm:
                    layers.append(nn.BatchNorm2d(width))
                down.append(nn.Sequential(*layers))
            up_in = width if i == depth - 1 else 2 * width
            if i == 0:
                up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(up_in, out_channels, 4, 2, 1), nn.Tanh()))
            else:
                up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(up_in, widths[i - 1], 4, 2, 1),
                                        nn.BatchNorm2d(widths[i - 1])))
        self.down = nn.ModuleList(down)
        self.up = nn.ModuleList(up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image in, image out (same spatial size; it must be divisible by ``2 ** depth``)."""
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        h = self.up[-1](skips[-1])
        for level in range(len(self.up) - 2, -1, -1):
            h = self.up[level](torch.cat([skips[level], h], dim=1))
        return h


def build_unet(in_channels: int = 1, out_channels: int = 1, depth: int = 5, base: int = 32, max_mult: int = 8,
               widths: Sequence[int] | None = None, innermost_norm: bool = False) -> UNetGenerator:
    """A pix2pix U-Net of ``depth`` levels; ``widths`` (one per level) overrides ``base``/``max_mult``."""
    for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                             ("depth", depth, 2), ("base", base, 1), ("max_mult", max_mult, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"an integer >= {low}", value)
    if widths is None:
        widths = unet_widths(depth, base, max_mult)
    widths = list(widths)
    if len(widths) != depth or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ConfigError("widths", f"{depth} positive integers (one per level)", widths)
    return UNetGenerator(in_channels, out_channels, widths, innermost_norm=innermost_norm)
