"""The engine's sample dicts: ``IndexedDataset`` per sample, per batch and through its loader, and the batch order."""

from __future__ import annotations

import pytest
import torch
from kd_core.data import (
    CollateWithIndex,
    IndexedBatch,
    IndexedDataset,
    InProcessLoader,
    _Fetched,
    epoch_batches,
    positions_tensor,
)
from kd_core.errors import ConfigError
from kd_core.testing import BlobDataset
from torch.utils.data import DataLoader, Dataset, default_collate


class _Pairs(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((2,), float(index)), index % 2


class _Batched(_Pairs):
    """A dataset with its own batched fetch, which must be the one used."""

    def __init__(self) -> None:
        self.batched_calls: list[list[int]] = []

    def __getitems__(self, indices: list[int]) -> list[dict]:
        self.batched_calls.append(list(indices))
        return [{"input": torch.full((2,), float(i)), "label": i % 2, "index": 100 + i} for i in indices]


def test_samples_become_dicts_with_their_index() -> None:
    dicts = IndexedDataset(BlobDataset(size=5))
    assert list(dicts[3]) == ["input", "label", "index"] and dicts[3]["index"] == 3
    pairs = IndexedDataset(_Pairs())
    sample = pairs[2]
    assert sample["index"] == 2 and sample["label"] == 0 and torch.equal(sample["input"], torch.full((2,), 2.0))


def test_a_samples_own_index_is_kept() -> None:
    sample = IndexedDataset(_Batched())[1]  # per sample: the plain __getitem__ (a pair, no own index)
    assert sample["index"] == 1
    batch = IndexedDataset(_Batched()).__getitems__([1, 3])
    assert [s["index"] for s in batch] == [101, 103]


def test_batched_fetch_equals_per_sample_fetch() -> None:
    data = BlobDataset(size=40, features=3, seed=1)
    indexed = IndexedDataset(data)
    batches = epoch_batches(len(data), 8, seed=0, phase=0, epoch=0)
    for batch, fetched in zip(batches, DataLoader(indexed, batch_sampler=batches, collate_fn=default_collate),
                              strict=True):
        expected = default_collate([indexed[i] for i in batch])
        assert fetched.keys() == expected.keys()
        for key in expected:
            assert torch.equal(fetched[key], expected[key])
        assert fetched["index"].tolist() == batch


def test_the_wrapped_datasets_batched_fetch_is_used() -> None:
    data = _Batched()
    out = next(iter(DataLoader(IndexedDataset(data), batch_sampler=[[0, 2]], collate_fn=default_collate)))
    assert data.batched_calls == [[0, 2]]
    assert out["index"].tolist() == [100, 102]


def test_a_sample_of_another_kind_names_the_dataset() -> None:
    class Scalars(_Pairs):
        def __getitem__(self, index: int) -> int:
            return index

    with pytest.raises(ConfigError, match=r"dataset.*dicts or .input, label. pairs.*int"):
        IndexedDataset(Scalars())[0]
    with pytest.raises(ConfigError, match="dataset"):
        IndexedDataset(Scalars()).__getitems__([0, 1])


def test_the_engines_loader_adds_the_positions_once_per_batch() -> None:
    data = BlobDataset(size=40, features=3, seed=1)
    indexed = IndexedDataset(data)
    batches = epoch_batches(len(data), 8, seed=0, phase=0, epoch=0)
    seen: list[list[dict]] = []

    def collate(samples: list[dict]) -> dict:
        seen.append(list(samples))
        return default_collate(samples)

    for batch, fetched in zip(batches, indexed.loader(batches, collate), strict=True):
        expected = default_collate([indexed[i] for i in batch])  # the per-sample path: the same batch
        assert fetched.keys() == expected.keys() and fetched["index"].dtype == torch.int64
        for key in expected:
            assert torch.equal(fetched[key], expected[key])
    assert all("index" not in sample for samples in seen for sample in samples)  # collate sees no positions
    assert all(sample is data[i] or sample.keys() == {"input", "label"} for sample, i in zip(seen[0], batches[0]))


def test_the_engines_loader_keeps_a_samples_own_index_and_names_pairs() -> None:
    own = next(iter(IndexedDataset(_Batched()).loader([[1, 3]])))
    assert own["index"].tolist() == [101, 103]
    pairs = next(iter(IndexedDataset(_Pairs()).loader([[2, 0]])))
    assert pairs["index"].tolist() == [2, 0] and pairs["label"].tolist() == [0, 0]
    assert pairs["input"][:, 0].tolist() == [2.0, 0.0]


def test_a_batch_mixing_dicts_pairs_and_other_mappings_becomes_dicts() -> None:
    from types import MappingProxyType

    class Mixed(_Pairs):
        def __getitem__(self, index: int):
            pair = super().__getitem__(index)
            return [dict, MappingProxyType, tuple][index % 3]({"input": pair[0], "label": pair[1]}
                                                              if index % 3 < 2 else pair)

    fetched = IndexedDataset(Mixed()).fetch([0, 1, 2, 3])
    assert all(type(sample) is dict for sample in fetched) and fetched.indices == [0, 1, 2, 3]
    assert [sample["label"] for sample in fetched] == [0, 1, 0, 1]


def test_collate_with_index_leaves_other_batches_alone() -> None:
    as_tuple = CollateWithIndex(lambda samples: (len(samples),))
    assert as_tuple(IndexedBatch([{"input": 1}], [5])) == (1,)
    plain = CollateWithIndex()([{"input": torch.zeros(2)}])  # a plain list: no positions known
    assert "index" not in plain
    assert positions_tensor([]).shape == (0,) and positions_tensor([7, 3]).tolist() == [7, 3]


def test_the_positions_survive_worker_processes() -> None:
    indexed = IndexedDataset(BlobDataset(size=24, features=3, seed=2))
    batches = epoch_batches(24, 8, seed=3, phase=0, epoch=0)
    got = [b["index"].tolist() for b in indexed.loader(batches, num_workers=2)]
    assert got == batches


def test_the_in_process_loader_gives_a_dataloaders_batches_and_can_run_twice() -> None:
    indexed = IndexedDataset(BlobDataset(size=20, features=3, seed=4))
    batches = epoch_batches(20, 6, seed=1, phase=0, epoch=0)
    loader = indexed.loader(batches)
    assert isinstance(loader, InProcessLoader) and len(loader) == len(batches) == 4
    reference = list(DataLoader(_Fetched(indexed), batch_sampler=batches, collate_fn=CollateWithIndex()))
    for _ in range(2):  # a second pass starts over, like a DataLoader's
        got = list(loader)
        assert len(got) == len(reference)
        for mine, theirs in zip(got, reference, strict=True):
            assert mine.keys() == theirs.keys()
            assert all(torch.equal(mine[k], theirs[k]) for k in mine)
