"""Tiny deterministic models and data for tests, benchmarks and examples (no downloads, milliseconds)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class BlobDataset(Dataset):
    """Gaussian blobs: ``size`` samples of ``features`` dims in ``classes`` clusters, fixed by ``seed``."""

    def __init__(self, size: int = 128, features: int = 8, classes: int = 3, seed: int = 0,
                 noise: float = 1.0) -> None:
        generator = torch.Generator().manual_seed(seed)
        centres = torch.randn(classes, features, generator=generator) * 2.0
        self.labels = torch.randint(0, classes, (size,), generator=generator)
        self.inputs = centres[self.labels] + noise * torch.randn(size, features, generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input": self.inputs[index], "label": self.labels[index]}


def tiny_mlp(features: int = 8, hidden: int = 16, classes: int = 3, dropout: float = 0.0, seed: int = 0
             ) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout -> Linear``, initialised from ``seed`` (taps "0", "1", "2", "3")."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))
    torch.set_rng_state(generator_state)
    return model
