"""Small students for edge demos, tests and benchmarks: a CNN and an MLP built by name, plus the data they
learn from (the 8x8 sklearn digits when scikit-learn is installed, else kd-core's Gaussian blobs shaped as
8x8 images) and a short supervised training loop.

Both students take images ``[N, 1, H, W]`` (the MLP flattens them), so one data path serves both.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from kd_core.errors import ConfigError
from kd_core.testing import BlobDataset
from torch import nn

__all__ = ["DemoData", "SmallCNN", "SmallMLP", "build_model", "demo_data", "model_names", "train_classifier"]


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


@dataclass
class DemoData:
    """Train / calibration / test images ``[N, 1, 8, 8]`` (float32, standardised) and labels, and the source."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    calib_x: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str


def _digits() -> tuple[torch.Tensor, torch.Tensor, str]:
    """The 1,797 sklearn digits. Read straight from the CSV that scikit-learn ships (importing sklearn costs
    seconds), through ``sklearn.datasets.load_digits`` if that file moved, or blobs without scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        blobs = BlobDataset(size=1797, features=64, classes=10, seed=0)
        return blobs.inputs.reshape(-1, 1, 8, 8).float(), blobs.labels, "blobs (scikit-learn not installed)"
    csv = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        pixels, target = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits  # ships its data inside the wheel: no download

        digits = load_digits()
        pixels, target = digits.data.astype(np.float32), digits.target.astype(np.int64)
    images = torch.from_numpy(pixels).reshape(-1, 1, 8, 8) / 16.0
    return images, torch.from_numpy(target), "sklearn digits 8x8"


def demo_data(calibration_size: int = 128, test_size: int = 500, seed: int = 0) -> DemoData:
    """Real 8x8 digits (1,797 images) split at random by ``seed`` into train / test, with the calibration
    set drawn from the train split (never from test). Standardised with the train mean and std."""
    images, labels, source = _digits()
    if not 0 < test_size < len(labels) - 1:
        raise ConfigError("test_size", f"an integer in [1, {len(labels) - 2}]", test_size)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    if not 0 < calibration_size <= len(train):
        raise ConfigError("calibration_size", f"an integer in [1, {len(train)}]", calibration_size)
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    return DemoData(train_x=images[train], train_y=labels[train], calib_x=images[train[:calibration_size]],
                    test_x=images[test], test_y=labels[test], source=source)


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 5, lr: float = 2e-3,
                     batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Plain supervised training (AdamW, cross-entropy) for a few epochs; returns ``model`` in eval mode."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs", "an integer >= 0", epochs)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()
