"""Magnitude pruning, fake quantization and the bytes accounting of ``kd_edge.fake_compress``, against hand values."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.fake_compress import (
    compress,
    compressible_weights,
    fake_quantize,
    magnitude_masks,
    model_bytes,
    prune_magnitude,
    quantize_tensor,
)
from torch import nn


def _linear(weight: list[list[float]], bias: bool = True) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias:
            layer.bias.fill_(0.5)
    return layer


def test_prune_half_of_a_two_by_two_matrix_by_hand() -> None:
    layer = _linear([[1.0, -4.0], [3.0, -2.0]])
    pruned = prune_magnitude(layer, 0.5)
    assert pruned.weight.tolist() == [[0.0, -4.0], [3.0, 0.0]]
    assert pruned.bias.tolist() == [0.5, 0.5]  # biases untouched
    assert layer.weight.tolist() == [[1.0, -4.0], [3.0, -2.0]]  # the model given is not changed


def test_global_and_per_layer_pruning_differ_by_hand() -> None:
    model = nn.Sequential(_linear([[1.0, 2.0]]), _linear([[10.0, 20.0]]))
    # global 50 %: the two smallest of {1, 2, 10, 20} go, both in the first layer
    glob = prune_magnitude(model, 0.5, "global")
    assert glob[0].weight.tolist() == [[0.0, 0.0]] and glob[1].weight.tolist() == [[10.0, 20.0]]
    # per layer 50 %: the smaller of each pair
    layer = prune_magnitude(model, 0.5, "layer")
    assert layer[0].weight.tolist() == [[0.0, 2.0]] and layer[1].weight.tolist() == [[0.0, 20.0]]


def test_masks_drop_an_exact_count_with_ties_by_position() -> None:
    masks = magnitude_masks([torch.tensor([1.0, -1.0, 1.0, 5.0])], 0.5)
    assert masks[0].tolist() == [False, False, True, True]
    assert magnitude_masks([torch.tensor([3.0, 1.0])], 0.0)[0].tolist() == [True, True]


def test_two_and_three_bit_grids_by_hand() -> None:
    w = torch.tensor([0.9, -0.3, 0.1, -0.6])
    # 2 bits: levels {-1, 0, 1}, scale 0.9; w / s = [1, -1/3, 1/9, -2/3] -> [1, 0, 0, -1]
    assert torch.allclose(quantize_tensor(w, 2), torch.tensor([0.9, 0.0, 0.0, -0.9]))
    # 3 bits: levels -3..3, scale 0.3; w / s = [3, -1, 1/3, -2] -> [3, -1, 0, -2]
    assert torch.allclose(quantize_tensor(w, 3), torch.tensor([0.9, -0.3, 0.0, -0.6]))


def test_per_channel_uses_one_scale_per_row_by_hand() -> None:
    w = torch.tensor([[0.9, -0.3], [0.2, 0.05]])
    # 2 bits per row: row 0 scale 0.9 -> [0.9, 0]; row 1 scale 0.2 -> [0.2, 0] (0.25 rounds to 0)
    assert torch.allclose(quantize_tensor(w, 2), torch.tensor([[0.9, 0.0], [0.2, 0.0]]))
    # per tensor, scale 0.9: 0.2 / 0.9 = 0.22 -> 0
    assert torch.allclose(quantize_tensor(w, 2, per_channel=False), torch.tensor([[0.9, 0.0], [0.0, 0.0]]))
    # 8 bits per row: row 1 scale 0.2 / 127; 0.05 -> round(31.75) = 32 -> 32 * 0.2 / 127
    assert torch.allclose(quantize_tensor(w, 8)[1, 1], torch.tensor(32 * 0.2 / 127))


def test_zeros_stay_zero_after_pruning_then_quantizing() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 8), nn.LayerNorm(8))
    small = compress(model, sparsity=0.7, bits=3)
    pruned = compress(model, sparsity=0.7)
    for (_, a), (_, b) in zip(compressible_weights(pruned), compressible_weights(small), strict=True):
        assert bool(((a == 0) <= (b == 0)).all())  # every pruned zero is still zero
    assert torch.equal(small[2].weight, model[2].weight)  # norms untouched
    total = sum(p.numel() for _, p in compressible_weights(small))
    assert sum(int((p == 0).sum()) for _, p in compressible_weights(small)) >= round(0.7 * total)


def test_fake_quantize_keeps_biases_and_is_idempotent() -> None:
    layer = _linear([[0.9, -0.3, 0.1, -0.6]])
    once = fake_quantize(layer, 3)
    assert torch.allclose(once.weight, torch.tensor([[0.9, -0.3, 0.0, -0.6]])) and once.bias.tolist() == [0.5]
    assert torch.allclose(fake_quantize(once, 3).weight, once.weight)


def test_tied_and_attention_weights_are_found_once() -> None:
    embedding, head = nn.Embedding(5, 4), nn.Linear(4, 5, bias=False)
    head.weight = embedding.weight
    names = [n for n, _ in compressible_weights(nn.ModuleDict({"emb": embedding, "head": head}))]
    assert names == ["emb.weight"]
    attention = nn.MultiheadAttention(4, 2)
    assert [n for n, _ in compressible_weights(attention)] == ["in_proj_weight", "out_proj.weight"]


def test_bytes_of_a_tiny_model_by_hand() -> None:
    embedding = nn.Embedding(3, 2)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 3.0], [0.0, 0.0]]))  # 3 non-zeros, 3 rows
    model = nn.Sequential(embedding, _linear([[1.0, -4.0], [3.0, 0.0]]))  # 3 non-zeros, 2 rows, 2 biases
    # uncompressed: (3 + 3) non-zeros x 32 bits + 2 biases x 32 bits = 256 bits = 32 bytes
    assert model_bytes(model) == 32.0
    # 4 bits per channel: 6 x 4 + 5 row scales x 32 + 2 x 32 = 248 bits = 31 bytes
    assert model_bytes(model, bits=4) == 31.0
    # per tensor: 6 x 4 + 2 scales x 32 + 64 = 152 bits = 19 bytes; a bitmap index adds 10 weights x 1 bit
    assert model_bytes(model, bits=4, per_channel=False) == 19.0
    assert model_bytes(model, bits=4, per_channel=False, index_bits=1) == 19.0 + 10 / 8


@pytest.mark.parametrize("kwargs, argument", [
    ({"sparsity": 1.0}, "sparsity"), ({"sparsity": -0.1}, "sparsity"), ({"sparsity": True}, "sparsity"),
    ({"bits": 1}, "bits"), ({"bits": 17}, "bits"), ({"bits": 4.0}, "bits"), ({"bits": 24}, "bits"),
    ({"scope": "row"}, "scope")])
def test_bad_input_names_the_argument(kwargs: dict, argument: str) -> None:
    with pytest.raises(ConfigError) as error:
        compress(nn.Linear(2, 2), **kwargs)
    assert error.value.argument == argument


def test_bad_bits_for_the_lower_level_functions() -> None:
    with pytest.raises(ConfigError, match="bits"):
        quantize_tensor(torch.ones(3), 32)
    with pytest.raises(ConfigError, match="bits"):
        fake_quantize(nn.Linear(2, 2), 0)
    with pytest.raises(ConfigError, match="sparsity"):
        prune_magnitude(nn.Linear(2, 2), 1.5)
    with pytest.raises(ConfigError, match="index_bits"):
        model_bytes(nn.Linear(2, 2), index_bits=-1)
