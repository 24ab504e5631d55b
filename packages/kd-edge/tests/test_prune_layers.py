"""Layer (depth) pruning of a transformer stack and of a residual stack."""

from __future__ import annotations

import copy

import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.models.resnet import build_resnet
from kd_edge.prune.layers import drop_layers


def _bert(layers: int = 4):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    return transformers.BertModel(config, add_pooling_layer=False).eval()


def test_bert_layers_dropped_and_config_consistent() -> None:
    model = _bert(4)
    original = copy.deepcopy(model)
    ids = torch.randint(0, 40, (2, 6))
    summary = drop_layers(model, [1, 3], example_inputs={"input_ids": ids})
    assert model.config.num_hidden_layers == len(model.encoder.layer) == 2
    assert [layer.attention.self.layer_idx for layer in model.encoder.layer] == [0, 1]
    with torch.no_grad():  # independent path: embeddings, then original layers 0 and 2 by hand
        hidden = original.embeddings(input_ids=ids)
        for index in (0, 2):
            hidden = original.encoder.layer[index](hidden)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        torch.testing.assert_close(model(input_ids=ids).last_hidden_state, hidden)
    assert summary.macs_after * 2 == summary.macs_before  # half the layers, all of the matmul work here
    assert summary.settings["container"] == "encoder.layer"


def test_residual_identity_blocks_dropped() -> None:
    torch.manual_seed(0)
    model = build_resnet(widths=(8, 16), blocks_per_stage=(2, 2)).eval()
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 16, 16)
    drop_layers(model, [1, 3], example_inputs=x)
    assert len(model.blocks) == 2
    with torch.no_grad():
        h = original.stem(x)
        h = original.blocks[2](original.blocks[0](h))
        expected = original.fc(h.mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), expected)


def test_block_that_changes_shape_is_refused() -> None:
    torch.manual_seed(0)
    model = build_resnet(widths=(8, 16), blocks_per_stage=(2, 2)).eval()
    with pytest.raises(ConfigError) as info:
        drop_layers(model, [2], example_inputs=torch.randn(1, 3, 16, 16))  # the strided, widening block
    assert info.value.argument == "layers" and info.value.received == [2]
    assert len(model.blocks) == 4


@pytest.mark.parametrize("layers", [[4], [-1], [0, 1, 2, 3], [], ["1"]])
def test_layer_index_out_of_range_is_refused(layers: list) -> None:
    torch.manual_seed(0)
    model = build_resnet(widths=(8,), blocks_per_stage=(4,)).eval()
    with pytest.raises(ConfigError) as info:
        drop_layers(model, layers)
    assert info.value.argument == "layers"
    assert len(model.blocks) == 4


def test_bert_index_out_of_range_names_layers() -> None:
    model = _bert(2)
    with pytest.raises(ConfigError, match=r"layers: expected layer indices in \[0, 1\]"):
        drop_layers(model, [2])


def test_unknown_container_is_refused() -> None:
    model = build_resnet()
    with pytest.raises(ConfigError) as info:
        drop_layers(model, [0], container="encoder.layer")
    assert info.value.argument == "container"
