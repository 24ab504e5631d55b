"""The engine's sample dicts: ``IndexedDataset`` per sample and per batch, and the batch order."""

from __future__ import annotations

import pytest
import torch
from kd_core.data import IndexedDataset, epoch_batches
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
