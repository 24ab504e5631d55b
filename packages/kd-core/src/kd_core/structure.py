"""The shape of an encoder–decoder with concatenation skips (a U-Net), described by module paths.

A domain that defines such a model describes it here, and a tool in another domain (kd-edge's U-Net
pruning and layer cutting) works from the description, so neither imports the other. The description
names modules, never tensors, with the same dotted paths as taps (``kd_core.taps``)::

    class MyUNet(nn.Module):
        def unet_structure(self) -> UNetStructure:
            return UNetStructure([UNetLevel(f"down.{i}", f"up.{i}") for i in range(len(self.down))])

    structure = unet_structure(model)          # the model's own, checked against its modules
    structure = unet_structure(model, given)   # or one given for a model that has no method

The convention (the only one described):

- ``levels`` run from the outermost (level 0, full resolution) to the innermost (the bottleneck);
- the encoder of level ``i + 1`` reads the output of the encoder of level ``i``;
- the decoder of the innermost level reads its own encoder's output only;
- the decoder of every other level ``i`` reads the concatenation, on the channel axis (dim 1), of its
  skip (the output of encoder ``i``) and the output of decoder ``i + 1``: skip first
  (``torch.cat([skip, deeper], 1)``) unless ``skip_first`` is False;
- the decoder of level 0 gives the model's output (possibly through layers outside the description).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from kd_core.errors import ConfigError
from kd_core.taps import unwrap

__all__ = ["HasUNetStructure", "UNetLevel", "UNetStructure", "unet_structure"]


def _check_path(value: Any, argument: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(argument, "a non-empty module path such as 'down.3'", value)
    return value


@dataclass(frozen=True)
class UNetLevel:
    """One level: the module path of its encoder and of its decoder."""

    encoder: str
    decoder: str

    def __post_init__(self) -> None:
        _check_path(self.encoder, "encoder")
        _check_path(self.decoder, "decoder")


@dataclass(frozen=True)
class UNetStructure:
    """The levels of a U-Net, outermost first, and the order of the concatenation (see the module doc)."""

    levels: tuple[UNetLevel, ...]
    skip_first: bool = True

    def __post_init__(self) -> None:
        levels = self.levels
        if isinstance(levels, str | bytes) or not isinstance(levels, Sequence) or not levels \
                or not all(isinstance(level, UNetLevel) for level in levels):
            raise ConfigError("levels", "a non-empty sequence of UNetLevel (outermost first)", levels)
        object.__setattr__(self, "levels", tuple(levels))
        if not isinstance(self.skip_first, bool):
            raise ConfigError("skip_first", "True or False", self.skip_first)
        paths = self.paths()
        if len(set(paths)) != len(paths):
            repeated = sorted({p for p in paths if paths.count(p) > 1})
            raise ConfigError("levels", "a different module for every encoder and decoder", repeated)

    @property
    def depth(self) -> int:
        """The number of levels."""
        return len(self.levels)

    def paths(self) -> list[str]:
        """Every encoder and decoder path, level by level (encoder first)."""
        return [path for level in self.levels for path in (level.encoder, level.decoder)]

    def outer(self, depth: int) -> UNetStructure:
        """The description of the outer ``depth`` levels (what remains when the inner ones are cut)."""
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= self.depth:
            raise ConfigError("depth", f"an integer in [1, {self.depth}]", depth)
        return UNetStructure(self.levels[:depth], self.skip_first)

    def split(self, skip_channels: int, total_channels: int) -> tuple[slice, slice]:
        """The channel slices ``(skip, deeper)`` of a decoder input of ``total_channels`` channels whose
        skip part has ``skip_channels``."""
        if not 0 < skip_channels < total_channels:
            raise ConfigError("skip_channels", f"a count in [1, {total_channels - 1}] (the decoder input has "
                              f"{total_channels} channels)", skip_channels)
        if self.skip_first:
            return slice(0, skip_channels), slice(skip_channels, total_channels)
        deeper = total_channels - skip_channels
        return slice(deeper, total_channels), slice(0, deeper)


@runtime_checkable
class HasUNetStructure(Protocol):
    """A model that describes its own U-Net structure."""

    def unet_structure(self) -> UNetStructure:
        """The description of this model, as it is now (after any level was removed)."""


def unet_structure(model: nn.Module, structure: UNetStructure | None = None) -> UNetStructure:
    """``structure``, or the (unwrapped) model's own ``unet_structure()``, checked against its modules:
    every path must name a submodule (an unknown one is a ``ConfigError`` listing the nearest names)."""
    if not isinstance(model, nn.Module):
        raise ConfigError("model", "a torch.nn.Module", type(model).__name__)
    model = unwrap(model)
    if structure is None:
        if not isinstance(model, HasUNetStructure):
            raise ConfigError("model", "a model with a unet_structure() method (kd_core.structure), or a "
                              "structure= given for it", type(model).__name__)
        structure = model.unet_structure()
    if not isinstance(structure, UNetStructure):
        raise ConfigError("structure", "a kd_core.structure.UNetStructure", type(structure).__name__)
    names = [name for name, _ in model.named_modules() if name]
    known = set(names)
    for path in structure.paths():
        if path not in known:
            near = difflib.get_close_matches(path, names, n=5)
            raise ConfigError("structure", "module paths of the model", path,
                              hint=f"nearest: {near}" if near else f"modules: {names[:8]}")
    return structure
