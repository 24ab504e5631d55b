"""Deterministic, resumable batching: the engine's own sampler and the sample dicts it feeds models.

Every epoch's order is a pure function of ``(seed, phase, epoch)``, so a resumed run can skip to the
exact batch where it stopped, and each process of a distributed run takes its own shard.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from kd_core.errors import ConfigError


class IndexedDataset(Dataset):
    """Wraps a dataset so that every sample is a dict that knows its position (``"index"``).

    A tuple sample ``(x, y)`` becomes ``{"input": x, "label": y}``; a dict sample is kept as is.
    ``dataset[i]`` and the batched ``__getitems__`` (what a plain ``DataLoader`` calls) give each sample its
    ``"index"``; ``loader`` is the engine's faster path, which adds the positions to the collated batch once.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _with_index(_as_dict(self.dataset[index]), index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A whole batch of samples, each with its ``"index"`` (a sample's own ``"index"`` is kept)."""
        batch = self.fetch(indices)
        return [_with_index(sample, index) for sample, index in zip(batch, batch.indices, strict=True)]

    def fetch(self, indices: Sequence[int]) -> IndexedBatch:
        """The samples at ``indices`` as dicts (dicts unchanged, not copied) and their positions: the wrapped
        dataset's own batched fetch if it has one, and no per-sample method dispatch otherwise."""
        indices = list(indices)
        return IndexedBatch(self.samples(indices), indices)

    def samples(self, indices: list[int]) -> list[dict[str, Any]]:
        """The samples at ``indices`` as dicts, without their positions (what ``fetch`` pairs them with)."""
        getitems = getattr(self.dataset, "__getitems__", None)
        # map() and set() loop in C: these lines run for every batch, and a Python-level loop over 64 samples
        # costs as much as the rest of the engine's step bookkeeping
        items = getitems(indices) if getitems else list(map(self.dataset.__getitem__, indices))
        if set(map(type, items)) != {dict}:
            items = [item if type(item) is dict else _as_dict(item) for item in items]
        return items

    def loader(self, batches: Sequence[list[int]], collate: Callable[[list[Any]], Any] = default_collate,
               num_workers: int = 0, generator: torch.Generator | None = None) -> DataLoader | InProcessLoader:
        """The batches at ``batches`` (lists of positions), collated, each carrying ``"index"``.

        ``collate`` sees the samples without their positions; ``CollateWithIndex`` adds them to the batch as
        one int64 tensor, instead of copying every sample to add its ``"index"`` and collating those one by one.
        With ``num_workers`` ≥ 1 this is a ``DataLoader`` (``generator`` seeds its workers); with none, an
        ``InProcessLoader``, which yields the same batches.
        """
        if num_workers == 0:
            return InProcessLoader(self, batches, collate)
        return DataLoader(_Fetched(self), batch_sampler=batches, num_workers=num_workers,
                          collate_fn=CollateWithIndex(collate), generator=generator)


class InProcessLoader:
    """``collate(dataset.samples(positions))`` with ``"index"`` added, for each list of positions in ``batches``.

    The batches a ``DataLoader`` without workers gives (with ``CollateWithIndex``), without its per-batch
    machinery (iterator bookkeeping and a profiler range around every batch), which costs as much as the
    engine's whole per-step bookkeeping; the positions of a pass are made as one tensor and split into
    views, not built batch by batch. Iterable more than once, like a ``DataLoader``.
    """

    def __init__(self, dataset: IndexedDataset, batches: Sequence[list[int]],
                 collate: Callable[[list[Any]], Any]) -> None:
        self.dataset, self.batches, self.collate = dataset, batches, collate

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        samples, collate = self.dataset.samples, self.collate
        flat = [i for positions in self.batches for i in positions]
        views = positions_tensor(flat).split([len(positions) for positions in self.batches])
        for positions, view in zip(self.batches, views, strict=True):
            batch = collate(samples(positions))
            if _takes_positions(batch):
                batch["index"] = view
            yield batch


class IndexedBatch(list):
    """The samples of one batch (dicts) and their positions in the dataset, ``indices``."""

    def __init__(self, samples: list[dict[str, Any]], indices: list[int]) -> None:
        super().__init__(samples)
        self.indices = indices


class CollateWithIndex:
    """``collate``, then the positions of an ``IndexedBatch``'s samples as ``batch["index"]`` (int64).

    A batch that already has an ``"index"`` (samples that carry their own) keeps it; a collated batch that
    is not a mutable mapping is returned as ``collate`` made it.
    """

    def __init__(self, collate: Callable[[list[Any]], Any] = default_collate) -> None:
        self.collate = collate

    def __call__(self, samples: list[Any]) -> Any:
        batch = self.collate(samples)
        if isinstance(samples, IndexedBatch) and _takes_positions(batch):
            batch["index"] = positions_tensor(samples.indices)
        return batch


def _takes_positions(batch: Any) -> bool:
    """Whether a collated batch gets ``"index"``: a mutable mapping that has none of its own."""
    # (the exact type check first: an ABC check runs Python code each time)
    return (type(batch) is dict or isinstance(batch, MutableMapping)) and "index" not in batch


def positions_tensor(indices: list[int]) -> torch.Tensor:
    """``indices`` as an int64 tensor, through a typed buffer (``torch.tensor`` on a list of Python ints
    inspects every element, which costs about as much as fetching the samples)."""
    return torch.frombuffer(array.array("q", indices), dtype=torch.int64) if indices else \
        torch.zeros(0, dtype=torch.int64)


class _Fetched(Dataset):
    """The view ``IndexedDataset.loader`` reads: batches come back from ``fetch``, positions apart."""

    def __init__(self, indexed: IndexedDataset) -> None:
        self.indexed = indexed

    def __len__(self) -> int:
        return len(self.indexed)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.indexed[index]

    def __getitems__(self, indices: Sequence[int]) -> IndexedBatch:
        return self.indexed.fetch(indices)


def _with_index(sample: dict[str, Any], index: int) -> dict[str, Any]:
    """A copy of ``sample`` with its ``"index"``; a sample that carries its own is returned as it is."""
    return sample if "index" in sample else {**sample, "index": index}


def _as_dict(item: Any) -> dict[str, Any]:
    """``item`` as a sample dict: a dict as is, another mapping copied, an ``(input, label)`` pair named."""
    if type(item) is dict:
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
