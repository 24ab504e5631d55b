"""Symmetric label noise as a dataset wrapper, drawn deterministically from a seed.

``NoisyLabels(dataset, rate, seed)`` flips exactly ``round(rate * len(dataset))`` labels, chosen uniformly
without replacement; each flipped label moves to one of the *other* ``num_classes - 1`` classes, uniformly
(never to itself). The same dataset, rate and seed always give the same noisy labels. Inputs are untouched;
the clean label stays available as ``"clean_label"``. Used by the BD-KD experiment (Amara et al.,
arXiv:2212.12965; digits with 20% symmetric noise on train).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError
from torch.utils.data import Dataset

__all__ = ["NoisyLabels", "check_noise_rate"]


def check_noise_rate(rate: Any, argument: str = "rate") -> float:
    """Return ``rate`` as a float, or raise ``ConfigError`` unless it is a finite number in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or not 0 <= rate < 1:
        raise ConfigError(argument, "a noise rate in [0, 1)", rate)
    return float(rate)


def _labels_of(dataset: Dataset) -> np.ndarray:
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64).copy()
    return np.array([int(dataset[i]["label"]) for i in range(len(dataset))], dtype=np.int64)


class NoisyLabels(Dataset):
    """``dataset`` with exactly ``round(rate * N)`` labels flipped to another class (symmetric noise).

    ``flipped`` holds the positions whose label changed; ``targets`` the noisy labels; ``clean_targets``
    the originals. Items are the wrapped dataset's dicts with ``label`` replaced and ``clean_label`` added.
    """

    def __init__(self, dataset: Dataset, rate: float, seed: int = 0, num_classes: int = 10) -> None:
        rate = check_noise_rate(rate)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError("num_classes", "an integer >= 2", num_classes)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError("seed", "an integer >= 0", seed)
        self.dataset = dataset
        self.rate, self.seed, self.num_classes = rate, int(seed), num_classes
        clean = _labels_of(dataset)
        if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
            raise ConfigError("dataset", f"labels in [0, {num_classes - 1}]",
                              f"labels in [{clean.min()}, {clean.max()}]")
        rng = np.random.default_rng(self.seed)
        count = round(rate * len(clean))
        self.flipped = np.sort(rng.choice(len(clean), size=count, replace=False)).astype(np.int64)
        shift = rng.integers(1, num_classes, size=count)  # 1 .. C-1: never back to the same class
        noisy = clean.copy()
        noisy[self.flipped] = (clean[self.flipped] + shift) % num_classes
        self.clean_targets = clean
        self.targets = noisy

    def __len__(self) -> int:
        """The wrapped dataset's length."""
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The wrapped item with the noisy ``label`` and the original ``clean_label``."""
        item = self.dataset[index]
        if not isinstance(item, Mapping):
            raise ConfigError("dataset", "items that are dicts with a 'label' key", type(item).__name__)
        return {**item, "label": torch.tensor(int(self.targets[index]), dtype=torch.int64),
                "clean_label": torch.tensor(int(self.clean_targets[index]), dtype=torch.int64)}
