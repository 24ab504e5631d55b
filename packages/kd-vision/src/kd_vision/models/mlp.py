"""Fully connected classifiers named by their hidden widths: ``mlp-<w1>-<w2>...``.

``mlp-512-512`` is Flatten, Linear(in, 512), ReLU, Linear(512, 512), ReLU, Linear(512, C); ``mlp-16`` has one
hidden layer of 16 units. ``in`` is the number of input values (784 for a 28×28 grey digit), so an MLP is built
for an input shape, unlike the convolutional models of the registry. The grammar is the one the BD-KD recipes
use (``mlp-512-512`` teachers, ``mlp-12`` students).

| model (28×28, 10 classes) | parameters |
|---|---|
| ``mlp-8`` | 6,370 |
| ``mlp-32`` | 25,450 |
| ``mlp-128`` | 101,770 |
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

from kd_core.errors import ConfigError
from torch import nn

__all__ = ["MLP_PATTERN", "build_mlp", "is_mlp_spec", "mlp_widths"]

#: ``mlp-`` then one or more positive widths separated by ``-``.
MLP_PATTERN = re.compile(r"mlp-([1-9]\d*(?:-[1-9]\d*)*)")


def is_mlp_spec(name: object) -> bool:
    """Whether ``name`` is an ``mlp-<widths>`` spec."""
    return isinstance(name, str) and MLP_PATTERN.fullmatch(name) is not None


def mlp_widths(name: str, argument: str = "model") -> list[int]:
    """The hidden widths of ``name`` (``mlp-64-32`` → ``[64, 32]``); ``ConfigError`` naming ``argument`` otherwise."""
    match = MLP_PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ConfigError(argument, "'mlp-<hidden widths>' (e.g. 'mlp-16' or 'mlp-512-512')", name)
    return [int(w) for w in match.group(1).split("-")]


def build_mlp(name: str, input_shape: Sequence[int], num_classes: int = 10, argument: str = "model") -> nn.Sequential:
    """The MLP ``name`` for inputs of ``input_shape`` (one item, e.g. ``(1, 28, 28)``) and ``num_classes`` outputs.

    Layout: ``0`` Flatten, then Linear and ReLU per hidden width, then the output Linear (the last module).
    """
    widths = mlp_widths(name, argument)
    if not input_shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape):
        raise ConfigError("input_shape", "positive integer dimensions of one input", input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError("num_classes", "an integer >= 2", num_classes)
    sizes = [math.prod(input_shape), *widths]
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes))
