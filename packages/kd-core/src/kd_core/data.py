"""Deterministic, resumable batching: the engine's own sampler and the sample dicts it feeds models.

Every epoch's order is a pure function of ``(seed, phase, epoch)``, so a resumed run can skip to the
exact batch where it stopped, and each process of a distributed run takes its own shard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from kd_core.errors import ConfigError


class IndexedDataset(Dataset):
    """Wraps a dataset so that every sample is a dict with an ``"index"`` (its position).

    A tuple sample ``(x, y)`` becomes ``{"input": x, "label": y}``; a dict sample is kept as is.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _as_sample(self.dataset[index], index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A whole batch at once (``DataLoader`` calls this): the wrapped dataset's own batched fetch if it
        has one, and no per-sample method dispatch through ``__getitem__`` otherwise."""
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(list(indices)) if getitems else [self.dataset[i] for i in indices]
        return [_as_sample(item, index) for item, index in zip(items, indices, strict=True)]


def _as_sample(item: Any, index: int) -> dict[str, Any]:
    """``item`` as a sample dict with its ``"index"`` (a dict's own ``"index"`` is kept)."""
    if type(item) is dict or isinstance(item, Mapping):  # (the exact type check first: it is much faster)
        sample = dict(item)
        if "index" not in sample:
            sample["index"] = index
        return sample
    if isinstance(item, tuple | list) and len(item) == 2:
        return {"input": item[0], "label": item[1], "index": index}
    raise ConfigError("dataset", "samples that are dicts or (input, label) pairs", type(item).__name__)


def epoch_batches(size: int, batch_size: int, seed: int, phase: int, epoch: int, shuffle: bool = True,
                  rank: int = 0, world_size: int = 1, drop_last: bool = False) -> list[list[int]]:
    """The batches (lists of sample indices) this process sees in one epoch.

    The permutation is drawn from a generator seeded by ``(seed, phase, epoch)`` only. With several
    processes, the permutation is padded by wrapping around to a multiple of ``world_size`` and
    dealt out rank by rank, so every process runs the same number of batches.
    """
    if batch_size < 1:
        raise ConfigError("batch_size", "a positive integer", batch_size)
    if size < 1:
        raise ConfigError("dataset", "at least one sample", size)
    if shuffle:
        generator = torch.Generator().manual_seed((seed * 1_000_003 + phase * 10_007 + epoch) % 2**63)
        order = torch.randperm(size, generator=generator).tolist()
    else:
        order = list(range(size))
    per_rank = math.ceil(size / world_size)
    order = (order * (1 + per_rank * world_size // size))[: per_rank * world_size]
    mine = order[rank::world_size]
    batches = [mine[i: i + batch_size] for i in range(0, len(mine), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def in_order(size: int, batch_size: int) -> Sequence[list[int]]:
    """Batches in dataset order (for evaluation)."""
    return [list(range(i, min(i + batch_size, size))) for i in range(0, size, batch_size)]
