"""The data the edge students learn from: the real 8x8 sklearn digits (kd-core's Gaussian blobs shaped as
8x8 images when scikit-learn is not installed), split into train / calibration / test, and a short supervised
training loop for the students of ``kd_edge.models``.
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

__all__ = ["DemoData", "demo_data", "train_classifier"]


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
                     batch_size: int = 64, seed: int = 0,
                     on_epoch: Callable[[int, int], None] | None = None) -> nn.Module:
    """Plain supervised training (AdamW, cross-entropy) for a few epochs; returns ``model`` in eval mode.

    ``on_epoch(epoch, steps)`` is called after every epoch (1-based; ``steps``: optimizer steps so far) with the
    model in eval mode, e.g. to record a learning curve; training resumes in train mode afterwards.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs", "an integer >= 0", epochs)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = 0
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch, steps)
            model.train()
    return model.eval()
