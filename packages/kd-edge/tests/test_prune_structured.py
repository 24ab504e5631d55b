"""Structured channel pruning: coupled layers shrink together and the pruned model still runs."""

from __future__ import annotations

import copy

import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.models.resnet import build_resnet
from kd_edge.prune.structured import prune_channels
from torch import nn


def test_unet_concat_skips_stay_consistent(make_unet) -> None:
    model = make_unet()
    x = torch.randn(2, 1, 32, 32)
    summary = prune_channels(model, x, 0.5)
    # every decoder layer below the innermost reads cat([encoder skip, deeper decoder output])
    for level in range(model.depth - 1):
        skip = model.down[level][-1].num_features if level else model.down[0][0].out_channels
        deeper = model.up[level + 1][1].out_channels
        assert model.up[level][1].in_channels == skip + deeper
        assert model.up[level][1].weight.shape[0] == skip + deeper  # ConvTranspose weight is [in, out, k, k]
    for level in range(1, model.depth):
        assert model.down[level][1].in_channels == model.down[level - 1][-1].weight.shape[0]
    assert model.down[1][1].out_channels == 8  # 16 -> 8: half of every group went
    assert model(x).shape == (2, 1, 32, 32)  # the image head (output layer) is never pruned
    assert summary.params_after < summary.params_before and summary.macs_after < summary.macs_before
    assert "up.0.1" in summary.settings["ignored_layers"]


def test_residual_add_coupling_respected() -> None:
    torch.manual_seed(0)
    model = build_resnet(widths=(16, 32), blocks_per_stage=(2, 2)).eval()
    x = torch.randn(2, 3, 16, 16)
    prune_channels(model, x, 0.5)
    stem_width = model.stem[0].out_channels
    previous = stem_width
    for block in model.blocks:
        out = block.conv2.out_channels
        if isinstance(block.shortcut, nn.Identity):
            assert out == previous  # the add x + branch(x) needs equal widths
        else:
            assert block.shortcut[0].out_channels == out and block.shortcut[0].in_channels == previous
        assert block.bn2.num_features == out
        previous = out
    assert stem_width == 8 and model.fc.in_features == previous == 16
    assert model(x).shape == (2, 10)


def test_lowest_magnitude_filters_go() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    with torch.no_grad():  # plant four near-dead channels: filters and the weights that read them
        model[0].weight[[1, 3, 4, 6]] *= 1e-3
        model[0].bias[[1, 3, 4, 6]] *= 1e-3
        model[2].weight[:, [1, 3, 4, 6]] *= 1e-3
    original = copy.deepcopy(model)
    prune_channels(model, torch.randn(1, 3, 8, 8), 0.5)
    assert torch.equal(model[0].weight, original[0].weight[[0, 2, 5, 7]])
    assert torch.equal(model[2].weight, original[2].weight[:, [0, 2, 5, 7]])


def test_macs_and_params_counted_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    summary = prune_channels(model, torch.randn(1, 2, 5, 5), 0.5)
    # 25 pixels · (2·4 + 4·2) MACs before, 25 · (2·2 + 2·2) after; params 2·4+4 + 4·2+2 -> 2·2+2 + 2·2+2
    assert (summary.macs_before, summary.macs_after) == (400, 200)
    assert (summary.params_before, summary.params_after) == (22, 12)


def test_attention_heads_removed_whole_and_consistently() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=16)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    original = copy.deepcopy(model)
    ids = {"input_ids": torch.randint(0, 40, (2, 7))}
    prune_channels(model, ids, 0.0, head_ratio=0.5)
    masked = copy.deepcopy(original)
    size = 8
    for layer, before, zeroed in zip(model.encoder.layer, original.encoder.layer, masked.encoder.layer, strict=True):
        attention = layer.attention.self
        assert attention.num_attention_heads == 2 and attention.all_head_size == 16
        assert layer.intermediate.dense.out_features == 48  # ratio 0: the feed-forward is untouched
        kept = []
        for row in range(0, 16, size):  # each kept block of rows is one whole original head
            block = attention.query.weight[row:row + size]
            head = next(h for h in range(4)
                        if torch.equal(block, before.attention.self.query.weight[h * size:(h + 1) * size]))
            kept.append(head)
            for name in ("key", "value"):  # key and value keep the same heads as query
                assert torch.equal(getattr(attention, name).weight[row:row + size],
                                   getattr(before.attention.self, name).weight[head * size:(head + 1) * size])
        assert len(set(kept)) == 2
        with torch.no_grad():  # independent path: silence the removed heads in the original
            for head in set(range(4)) - set(kept):
                zeroed.attention.output.dense.weight[:, head * size:(head + 1) * size] = 0
    torch.testing.assert_close(model(**ids).last_hidden_state, masked(**ids).last_hidden_state)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", True])
def test_ratio_outside_unit_interval_is_refused(ratio: object, make_unet) -> None:
    model = make_unet()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError) as info:
        prune_channels(model, torch.randn(1, 1, 32, 32), ratio)  # type: ignore[arg-type]
    assert info.value.argument == "ratio" and "ratio" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was touched


def test_unknown_importance_and_missing_taylor_loss(make_unet) -> None:
    with pytest.raises(ConfigError, match="importance"):
        prune_channels(make_unet(), torch.randn(1, 1, 32, 32), 0.5, importance="random")
    with pytest.raises(ConfigError, match="loss_fn"):
        prune_channels(make_unet(), torch.randn(1, 1, 32, 32), 0.5, importance="taylor")


def test_taylor_importance_runs_with_a_loss(make_unet) -> None:
    model = make_unet().train()
    x = torch.randn(2, 1, 32, 32)
    summary = prune_channels(model, x, 0.25, importance="taylor", loss_fn=lambda m: m(x).pow(2).mean())
    assert summary.params_after < summary.params_before
    assert all(p.grad is None for p in model.parameters())
    assert model.eval()(x).shape == x.shape
