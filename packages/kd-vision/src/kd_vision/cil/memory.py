"""The exemplar memory: a fixed number of real training images per class, kept after each task.

Selection is **random** (seeded by the run seed and the class), which with 5 exemplars per class is a
strong, simple baseline to iCaRL's herding. Images are kept by reference (positions in their dataset).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from kd_core.errors import ConfigError
from torch.utils.data import ConcatDataset, Dataset, Subset

from kd_vision.data.digits import DigitsDataset

__all__ = ["ExemplarMemory"]


class ExemplarMemory:
    """``per_class`` random exemplars of every class added so far."""

    def __init__(self, per_class: int, seed: int = 0) -> None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ConfigError("memory.per_class", "an integer >= 1", per_class)
        self.per_class = per_class
        self.seed = seed
        self._parts: dict[int, Subset] = {}

    @property
    def classes(self) -> list[int]:
        """The classes held."""
        return sorted(self._parts)

    def add(self, dataset: DigitsDataset, classes: Sequence[int]) -> None:
        """Keep ``per_class`` random samples of each class in ``classes`` from ``dataset``."""
        targets = dataset.targets
        for c in classes:
            positions = np.flatnonzero(targets == c)
            if len(positions) < self.per_class:
                raise ConfigError("memory.per_class", f"at most the {len(positions)} training images of class {c}",
                                  self.per_class)
            rng = np.random.default_rng([self.seed, int(c)])
            chosen = np.sort(rng.choice(positions, size=self.per_class, replace=False))
            self._parts[int(c)] = Subset(dataset, chosen.tolist())

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts.values())

    def dataset(self) -> Dataset | None:
        """Every exemplar as one dataset (``None`` while empty)."""
        return ConcatDataset([self._parts[c] for c in self.classes]) if self._parts else None
