"""The engine's batches: samples as dicts with their positions, through a plain ``DataLoader``, and the batch order."""

from __future__ import annotations

import pytest
import torch
from kd_core.data import IndexedDataset, WithIndex, epoch_batches, loader
from kd_core.errors import ConfigError
from kd_core.testing import BlobDataset
from torch.utils.data import Dataset, default_collate


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


def test_the_loader_gives_the_batches_asked_for_in_order_with_their_positions() -> None:
    data = BlobDataset(size=40, features=3, seed=1)
    indexed = IndexedDataset(data)
    batches = epoch_batches(len(data), 8, seed=0, phase=0, epoch=0)
    seen: list[list[dict]] = []

    def collate(samples: list[dict]) -> dict:
        seen.append(list(samples))
        return default_collate(samples)

    got = list(loader(data, batches, collate))
    assert len(got) == len(batches) == 5
    for batch, fetched in zip(batches, got, strict=True):
        expected = default_collate([indexed[i] for i in batch])  # sample by sample: the same batch
        assert fetched.keys() == expected.keys() and fetched["index"].dtype == torch.int64
        assert fetched["index"].tolist() == batch
        for key in expected:
            assert torch.equal(fetched[key], expected[key])
    assert all("index" not in sample for samples in seen for sample in samples)  # collate sees no positions


def test_the_loader_resumes_from_a_batch_offset() -> None:
    data = BlobDataset(size=30, features=3, seed=2)
    batches = epoch_batches(len(data), 4, seed=5, phase=1, epoch=2)
    whole = [b["index"].tolist() for b in loader(data, batches)]
    assert whole == batches
    assert [b["index"].tolist() for b in loader(data, batches[3:])] == whole[3:]


def test_the_loader_draws_nothing_from_the_global_rng_with_its_own_generator() -> None:
    data = BlobDataset(size=16, features=3)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    list(loader(data, [[0, 1], [2, 3]], generator=torch.Generator().manual_seed(1)))
    assert torch.equal(torch.rand(1), expected)


def test_the_wrapped_datasets_batched_fetch_is_used_and_a_samples_own_index_kept() -> None:
    data = _Batched()
    out = next(iter(loader(data, [[0, 2]])))
    assert data.batched_calls == [[0, 2]]
    assert out["index"].tolist() == [100, 102]
    assert IndexedDataset(_Batched())[1]["index"] == 1  # per sample: the plain __getitem__ (a pair, no own index)


def test_pairs_are_named_and_a_batch_mixing_kinds_becomes_dicts() -> None:
    from types import MappingProxyType

    pairs = next(iter(loader(_Pairs(), [[2, 0]])))
    assert pairs["index"].tolist() == [2, 0] and pairs["label"].tolist() == [0, 0]
    assert pairs["input"][:, 0].tolist() == [2.0, 0.0]

    class Mixed(_Pairs):
        def __getitem__(self, index: int):
            pair = super().__getitem__(index)
            return [dict, MappingProxyType, tuple][index % 3]({"input": pair[0], "label": pair[1]}
                                                              if index % 3 < 2 else pair)

    mixed = next(iter(loader(Mixed(), [[0, 1, 2, 3]])))
    assert mixed["label"].tolist() == [0, 1, 0, 1] and mixed["index"].tolist() == [0, 1, 2, 3]


def test_a_sample_of_another_kind_names_the_dataset() -> None:
    class Scalars(_Pairs):
        def __getitem__(self, index: int) -> int:
            return index

    with pytest.raises(ConfigError, match=r"dataset.*dicts or .input, label. pairs.*int"):
        IndexedDataset(Scalars())[0]
    with pytest.raises(ConfigError, match="dataset"):
        list(loader(Scalars(), [[0, 1]]))


def test_with_index_leaves_other_batches_alone() -> None:
    assert WithIndex(lambda samples: (len(samples),))([(5, {"input": 1})]) == (1,)
    own = WithIndex()([(0, {"input": torch.zeros(2), "index": 7})])
    assert own["index"].tolist() == [7]


def test_the_positions_survive_worker_processes() -> None:
    data = BlobDataset(size=24, features=3, seed=2)
    batches = epoch_batches(24, 8, seed=3, phase=0, epoch=0)
    got = [b["index"].tolist() for b in loader(data, batches, num_workers=2)]
    assert got == batches


def test_epoch_batches_are_deterministic_and_shard_the_epoch_over_ranks() -> None:
    one = epoch_batches(10, 3, seed=1, phase=0, epoch=0)
    assert one == epoch_batches(10, 3, seed=1, phase=0, epoch=0) != epoch_batches(10, 3, seed=1, phase=0, epoch=1)
    assert sorted(i for b in one for i in b) == list(range(10))
    shards = [epoch_batches(10, 3, seed=1, phase=0, epoch=0, rank=r, world_size=2) for r in (0, 1)]
    flat = [[i for b in shard for i in b] for shard in shards]
    assert len(flat[0]) == len(flat[1]) == 5 and sorted(flat[0] + flat[1]) == list(range(10))
    with pytest.raises(ConfigError, match="batch_size"):
        epoch_batches(10, 0, seed=1, phase=0, epoch=0)
