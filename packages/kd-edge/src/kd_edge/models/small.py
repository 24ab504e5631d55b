"""Small students for edge demos, tests and benchmarks: a CNN and an MLP built by name.

Both students take images ``[N, 1, H, W]`` (the MLP flattens them), so one data path
(``kd_edge.data.digits``) serves both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from kd_core.errors import ConfigError
from torch import nn

__all__ = ["SmallCNN", "SmallMLP", "build_model", "model_names"]


class SmallCNN(nn.Module):
    """``[Conv3x3 -> ReLU] x len(widths)`` (a 2x2 max-pool after every second conv), global average pool,
    ``Linear``. Convolutions carry almost all of the compute."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, classes: int = 10,
                 widths: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)
        self.input_shape = (in_channels, image_size, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes]``."""
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class SmallMLP(nn.Module):
    """``Flatten -> [Linear -> ReLU] x len(hidden) -> Linear`` over images ``[N, C, H, W]``."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, classes: int = 10,
                 hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        features = in_channels * image_size * image_size
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        layers.append(nn.Linear(features, classes))
        self.layers = nn.Sequential(*layers)
        self.input_shape = (in_channels, image_size, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes]``."""
        return self.layers(x)


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "cnn": lambda: SmallCNN(),
    "mlp": lambda: SmallMLP(),
    # compute-heavy variants for the latency benchmarks (weights dominate the ONNX file)
    "cnn-wide": lambda: SmallCNN(widths=(64, 128, 128, 128)),
    "mlp-wide": lambda: SmallMLP(hidden=(1024, 1024, 1024)),
}


def model_names() -> list[str]:
    """The names ``build_model`` accepts."""
    return sorted(_BUILDERS)


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh student by name (``model_names()``), initialised from ``seed`` (global RNG untouched).

    Every model has an ``input_shape`` attribute ``(C, H, W)`` (one sample, no batch axis).
    """
    if name not in _BUILDERS:
        raise ConfigError("model", f"one of {model_names()}", name)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return _BUILDERS[name]()
    finally:
        torch.set_rng_state(state)
