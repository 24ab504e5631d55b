"""The Pix2Pix U-Net generator (Isola, Zhu, Zhou and Efros, "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017, §3.2.1 and appendix 6.1.1).

Level ``i`` (0 = outermost) owns ``down[i]``, a strided 4×4 convolution that halves the resolution,
and ``up[i]``, a strided 4×4 transposed convolution that doubles it. Encoder widths are
``base · min(2^i, max_mult)`` (the paper: base 64, max_mult 8, 8 levels for 256×256 images). The
decoder of level ``i < depth − 1`` reads ``cat([down_i output, up_{i+1} output], 1)``; the innermost
reads its own encoder output only. As in the paper, encoder layers are LeakyReLU(0.2)–Conv–BatchNorm and
decoder layers ReLU–ConvTranspose–BatchNorm, the outermost encoder layer has neither activation nor norm,
the innermost encoder layer has no norm (``innermost_norm=True`` keeps one), the outermost decoder layer
ends in Tanh instead, and the decoders of the three innermost levels end in Dropout(0.5) (``dropout``,
``dropout_levels``; never the outermost). The paper keeps that dropout on at test time as its noise
source: call ``.train()`` on the Dropout modules for that; ``eval()`` turns it off.

Flat ``ModuleList``s, not recursion, so that every layer has a stable name (``down.3.1``) for taps,
pruning records and sensitivity reports, and ``forward`` runs over however many levels they hold (so a
tool may remove the innermost ones). ``unet_structure()`` describes the model for
``kd_core.structure``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from kd_core.errors import ConfigError
from kd_core.structure import UNetLevel, UNetStructure
from torch import nn

__all__ = ["UNetGenerator", "build_unet", "unet_widths"]


def _positive_int(value: Any, argument: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(argument, f"an integer >= {low}", value)
    return value


def unet_widths(depth: int, base: int, max_mult: int) -> list[int]:
    """Encoder output widths per level: ``base · min(2^i, max_mult)``."""
    depth, base, max_mult = (_positive_int(depth, "depth"), _positive_int(base, "base"),
                             _positive_int(max_mult, "max_mult"))
    return [base * min(2**i, max_mult) for i in range(depth)]


def _encoder(level: int, depth: int, in_channels: int, width: int, innermost_norm: bool) -> nn.Sequential:
    if level == 0:
        return nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 1))
    layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(in_channels, width, 4, 2, 1)]
    if level < depth - 1 or innermost_norm:
        layers.append(nn.BatchNorm2d(width))
    return nn.Sequential(*layers)


def _decoder(level: int, in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)]
    if level == 0:
        return nn.Sequential(*layers, nn.Tanh())
    layers.append(nn.BatchNorm2d(out_channels))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """Encoder ``down``, decoder ``up`` (``ModuleList``s indexed by level) with concat skips; see the module doc.

    ``image_size``, when given, is the side the generator is meant for: it must be divisible by
    ``2 ** depth`` (checked now) and is the side of ``input_shape``; inputs of any side divisible by
    ``2 ** depth`` are accepted.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int], innermost_norm: bool = False,
                 dropout: float = 0.5, dropout_levels: int = 3, image_size: int | None = None) -> None:
        super().__init__()
        _positive_int(in_channels, "in_channels")
        _positive_int(out_channels, "out_channels")
        if isinstance(widths, str | bytes) or not isinstance(widths, Sequence) or not widths:
            raise ConfigError("widths", "a non-empty sequence of positive integers (one per level)", widths)
        widths = [_positive_int(w, "widths") for w in widths]
        if not isinstance(innermost_norm, bool):
            raise ConfigError("innermost_norm", "True or False", innermost_norm)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ConfigError("dropout", "a probability in [0, 1)", dropout)
        _positive_int(dropout_levels, "dropout_levels", low=0)
        depth = len(widths)
        if image_size is not None and (_positive_int(image_size, "image_size") % 2**depth):
            raise ConfigError("image_size", f"a side divisible by 2**depth = {2**depth} (depth {depth})", image_size,
                              hint=f"use depth <= {(image_size & -image_size).bit_length() - 1} for this size")
        self.in_channels, self.image_size = in_channels, image_size
        down, up = [], []
        for i, width in enumerate(widths):
            down.append(_encoder(i, depth, in_channels if i == 0 else widths[i - 1], width, innermost_norm))
            up_in = width if i == depth - 1 else 2 * width
            up_out = out_channels if i == 0 else widths[i - 1]
            up.append(_decoder(i, up_in, up_out, dropout if i >= depth - dropout_levels else 0.0))
        self.down = nn.ModuleList(down)
        self.up = nn.ModuleList(up)

    @property
    def depth(self) -> int:
        """The number of levels (as many as ``down`` holds now)."""
        return len(self.down)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one example input: ``image_size``, else the larger of 32 and ``2 ** depth``."""
        side = self.image_size or max(32, 2**self.depth)
        return (self.in_channels, side, side)

    def unet_structure(self) -> UNetStructure:
        """The ``kd_core.structure`` description: level ``i`` is ``down.i`` / ``up.i``, skip first."""
        return UNetStructure(tuple(UNetLevel(f"down.{i}", f"up.{i}") for i in range(self.depth)))

    def _check_input(self, x: torch.Tensor) -> None:
        multiple = 2**self.depth
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError("input", f"a [N, {self.in_channels}, H, W] image batch", tuple(x.shape))
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ConfigError("input", f"H and W divisible by 2**depth = {multiple} (depth {self.depth})",
                              tuple(x.shape[-2:]), hint="resize or pad the images, or use a smaller depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image in, image out (same spatial size, which must be divisible by ``2 ** depth``)."""
        self._check_input(x)
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        h = self.up[len(skips) - 1](skips[-1])
        for level in range(len(skips) - 2, -1, -1):
            h = self.up[level](torch.cat([skips[level], h], dim=1))
        return h


def build_unet(in_channels: int = 3, out_channels: int = 3, depth: int = 8, base: int = 64, max_mult: int = 8,
               widths: Sequence[int] | None = None, innermost_norm: bool = False, dropout: float = 0.5,
               dropout_levels: int = 3, image_size: int | None = None) -> UNetGenerator:
    """A Pix2Pix U-Net of ``depth`` levels (defaults: the paper's 256×256 generator); ``widths`` (one per
    level) overrides ``base``/``max_mult``."""
    _positive_int(depth, "depth")
    if widths is None:
        widths = unet_widths(depth, base, max_mult)
    elif isinstance(widths, str | bytes) or not isinstance(widths, Sequence) or len(widths) != depth:
        raise ConfigError("widths", f"{depth} positive integers (one per level)", widths)
    return UNetGenerator(in_channels, out_channels, widths, innermost_norm=innermost_norm, dropout=dropout,
                         dropout_levels=dropout_levels, image_size=image_size)
