"""Per-sample difficulty measured on held-out folds (CES-KD's curriculum score).

CES-KD (Amara, Ziaeefard, Meyer, Gross and Clark, arXiv:2209.07606) routes each training sample to an expert by
how hard it is. A model's loss on a sample it was trained on says little about that sample: a converged network
fits nearly every training sample, so the scores collapse towards zero and their ranking is mostly noise. Here the
train split is dealt into k folds (a seeded permutation); a scorer trained on the other k − 1 folds scores each
fold, so no sample is ever scored by a model that saw it (k-fold cross-validation, as in out-of-fold
predictions). The score is the scorer's cross-entropy on the sample (``kd_core.curriculum.cross_entropy_difficulty``).

Sample ids are positions in the scored dataset, the ids the training loop puts in every batch (``"index"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from kd_core.curriculum import cross_entropy_difficulty
from kd_core.data import as_sample
from kd_core.errors import ConfigError
from kd_core.signals import Batch, Forward, default_forward
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["AtPositions", "fold_assignment", "held_out_difficulty", "training_positions"]

#: ``train_scorer(fold, positions)``: a model trained on the dataset's samples at ``positions`` (fold: 0-based).
TrainScorer = Callable[[int, list[int]], nn.Module]


def fold_assignment(size: int, folds: int, seed: int = 0) -> list[list[int]]:
    """Positions 0..size − 1 dealt into ``folds`` disjoint folds: a permutation seeded by ``seed``, the sample of
    rank r going to fold r mod ``folds`` (fold sizes differ by at most one); each fold sorted."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError("curriculum.folds", "an integer of at least 2 (a scorer needs samples outside its fold)",
                          folds)
    if size < folds:
        raise ConfigError("curriculum.folds", f"at most the number of training samples ({size})", folds)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return [sorted(order[f::folds]) for f in range(folds)]


def training_positions(folds: Sequence[Sequence[int]], held_out: int) -> list[int]:
    """The positions a scorer for fold ``held_out`` trains on: every other fold, in order."""
    return sorted(p for f, fold in enumerate(folds) if f != held_out for p in fold)


class AtPositions(Dataset):
    """The samples of ``dataset`` at ``positions``, each a dict whose ``"index"`` is its position in ``dataset``
    (not in this view), so that scores are keyed like the training loop's sample ids."""

    def __init__(self, dataset: Dataset, positions: Sequence[int]) -> None:
        self.dataset, self.positions = dataset, list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        position = self.positions[index]
        return {**as_sample(self.dataset[position]), "index": position}


def held_out_difficulty(dataset: Dataset, folds: Sequence[Sequence[int]], train_scorer: TrainScorer,
                        collate: Callable[[list[Any]], Batch], forward: Forward = default_forward,
                        to_device: Callable[[Batch], Batch] = lambda b: b) -> dict[int, float]:
    """Position -> the cross-entropy on that sample of a scorer trained without its fold.

    For each fold f, ``train_scorer(f, training_positions(folds, f))`` trains a model on the other folds; it then
    scores the samples of fold f alone (batches from ``collate``, moved by ``to_device``, fed by ``forward``).
    """
    scores: dict[int, float] = {}
    for f, held in enumerate(folds):
        if not held:
            raise ConfigError("folds", "non-empty folds", f"fold {f} is empty")
        model = train_scorer(f, training_positions(folds, f))
        loader = DataLoader(AtPositions(dataset, held), batch_size=256, collate_fn=collate)
        scores.update(cross_entropy_difficulty(model, (to_device(b) for b in loader), forward))
    return scores
