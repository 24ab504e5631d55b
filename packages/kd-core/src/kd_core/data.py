"""Deterministic, resumable batching: the engine's batch order and the loader that feeds it.

Every epoch's order is a pure function of ``(seed, phase, epoch)``, so a resumed run can skip to the
exact batch where it stopped, and each process of a distributed run takes its own shard. The engine
reads a dataset through ``loader``: a plain ``DataLoader`` whose batch sampler is that list of
batches and whose collate adds the samples' positions as ``batch["index"]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from kd_core.errors import ConfigError


class IndexedDataset(Dataset):
    """Wraps a dataset so that every sample is a dict that knows its position (``"index"``).

    A tuple sample ``(x, y)`` becomes ``{"input": x, "label": y}``; a dict sample is kept, and so is its own
    ``"index"`` if it has one. (The engine itself reads datasets through ``loader``.)
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = as_sample(self.dataset[index])
        return sample if "index" in sample else {**sample, "index": index}


class _Positioned(Dataset):
    """``(position, sample)`` pairs of a dataset, the samples as dicts: what ``loader`` reads. A dataset's
    own batched fetch (``__getitems__``), if it has one, serves a whole batch in one call."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, dict[str, Any]]:
        return index, as_sample(self.dataset[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(list(indices)) if getitems is not None else [self.dataset[i] for i in indices]
        return [(index, as_sample(item)) for index, item in zip(indices, items, strict=True)]


class WithIndex:
    """``collate`` over the samples of ``(position, sample)`` pairs, then their positions as ``batch["index"]``.

    The positions become one int64 tensor. A batch that already has an ``"index"`` (samples that carry their
    own) keeps it; a collated batch that is not a mutable mapping is returned as ``collate`` made it.
    """

    def __init__(self, collate: Callable[[list[Any]], Any] = default_collate) -> None:
        self.collate = collate

    def __call__(self, pairs: Sequence[tuple[int, Any]]) -> Any:
        batch = self.collate([sample for _, sample in pairs])
        if isinstance(batch, MutableMapping) and "index" not in batch:
            batch["index"] = torch.tensor([position for position, _ in pairs], dtype=torch.int64)
        return batch


def loader(dataset: Dataset, batches: Sequence[list[int]], collate: Callable[[list[Any]], Any] = default_collate,
           num_workers: int = 0, generator: torch.Generator | None = None) -> DataLoader:
    """The batches of ``dataset`` at ``batches`` (lists of positions, in that order), collated by ``collate``,
    each carrying ``"index"``: a ``DataLoader`` with ``batches`` as its batch sampler.

    ``collate`` sees the samples as dicts, without their positions. ``generator`` is the loader's own random
    source (its workers' seeds): with one, iterating draws nothing from the global RNG.
    """
    return DataLoader(_Positioned(dataset), batch_sampler=batches, collate_fn=WithIndex(collate),
                      num_workers=num_workers, generator=generator)


def as_sample(item: Any) -> dict[str, Any]:
    """``item`` as a sample dict: a dict as is, another mapping copied, an ``(input, label)`` pair named."""
    if isinstance(item, dict):
        return item
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, tuple | list) and len(item) == 2:
        return {"input": item[0], "label": item[1]}
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
