"""``Backend.to_device``: every tensor of a nested batch ends on the device; nothing else changes."""

from __future__ import annotations

import pytest
import torch
from kd_core import Backend


def _batch() -> dict:
    return {"input": torch.ones(2, 3), "label": torch.tensor([0, 1]), "name": "x",
            "pair": (torch.zeros(1), [torch.ones(1), 3]), "nested": {"mask": torch.ones(2, dtype=torch.bool)}}


def test_on_the_cpu_every_tensor_is_kept_equal_and_the_structure_is_rebuilt() -> None:
    batch = _batch()
    moved = Backend("cpu", distributed="none").to_device(batch)
    assert moved is not batch and moved.keys() == batch.keys() and moved["name"] == "x"
    assert type(moved["pair"]) is tuple and type(moved["pair"][1]) is list and moved["pair"][1][1] == 3
    tensors = [(moved["input"], batch["input"]), (moved["label"], batch["label"]), (moved["pair"][0], batch["pair"][0]),
               (moved["nested"]["mask"], batch["nested"]["mask"])]
    assert all(a.device.type == "cpu" and a.dtype == b.dtype and torch.equal(a, b) for a, b in tensors)


def test_a_parameter_in_a_batch_goes_through_to() -> None:
    weight = torch.nn.Parameter(torch.ones(2))
    moved = Backend("cpu", distributed="none").to_device({"w": weight})
    assert torch.equal(moved["w"], weight) and moved["w"].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_every_tensor_moves() -> None:
    moved = Backend("cuda", distributed="none").to_device(_batch())
    tensors = [moved["input"], moved["label"], moved["pair"][0], moved["pair"][1][0], moved["nested"]["mask"]]
    assert all(t.device.type == "cuda" for t in tensors) and moved["name"] == "x" and moved["pair"][1][1] == 3
