"""Cut Inner Layers on the U-Net: sensitivity, inner-layer filter pruning and layer cutting."""

from __future__ import annotations

import copy

import pytest
import torch
from kd_core.errors import ConfigError
from kd_edge.models.unet import UNetGenerator, build_unet
from kd_edge.prune.structured import prune_channels
from kd_edge.prune.unet_cut import cut_inner_layers, layer_sensitivity, prune_inner_layers


def _unet(depth: int = 4, base: int = 8) -> UNetGenerator:
    torch.manual_seed(0)
    return build_unet(depth=depth, base=base).eval()


def _kill_innermost_branch(model: UNetGenerator) -> None:
    """Make the innermost decoder output exactly zero (in eval mode), whatever its input."""
    inner = model.up[-1]
    with torch.no_grad():
        inner[1].weight.zero_()
        inner[1].bias.zero_()
        inner[2].bias.zero_()  # BatchNorm shift; running mean is 0, so the output is 0


def test_cut_keeps_every_shape_valid_and_runs() -> None:
    model = _unet(depth=5)
    x = torch.randn(2, 1, 32, 32)
    new, summary = cut_inner_layers(model, levels=2, example_inputs=x)
    assert new.depth == 3 and len(new.down) == len(new.up) == 3
    assert new(x).shape == x.shape
    assert new(torch.randn(1, 1, 8, 8)).shape == (1, 1, 8, 8)  # divisibility is now 2**3
    assert new.up[2][1].in_channels == new.down[2][1].out_channels == 32  # innermost reads only its skip
    assert summary.params_after < summary.params_before and summary.macs_after < summary.macs_before
    for name in ("down.0.0.weight", "down.1.1.weight", "down.2.2.running_var", "up.0.1.weight", "up.1.1.weight"):
        assert torch.equal(new.state_dict()[name], model.state_dict()[name])  # kept weights transfer unchanged
    assert torch.equal(new.up[2][1].weight, model.up[2][1].weight[:32])
    assert model.depth == 5  # the original is untouched


def test_cut_of_a_dead_branch_changes_nothing() -> None:
    model = _unet(depth=4)
    _kill_innermost_branch(model)
    x = torch.randn(3, 1, 32, 32)
    for inputs in (x, None):  # branch mean measured, or taken from the BatchNorm shift
        new, _ = cut_inner_layers(model, levels=1, example_inputs=inputs)
        torch.testing.assert_close(new(x), model(x))


def test_cut_folds_the_removed_branch_mean_into_the_bias() -> None:
    model = _unet(depth=3)
    with torch.no_grad():  # the innermost branch now outputs a constant 0.5 on every channel
        model.up[-1][1].weight.zero_()
        model.up[-1][1].bias.zero_()
        model.up[-1][2].bias.fill_(0.5)
    x = torch.randn(2, 1, 32, 32)
    new, _ = cut_inner_layers(model, levels=1, example_inputs=x)
    deconv = model.up[1][1]
    skip = model.down[1][1].out_channels
    expected = deconv.bias + 0.5 * deconv.weight[skip:].sum(dim=(0, 2, 3)) / 4
    torch.testing.assert_close(new.up[1][1].bias, expected)


def test_cut_after_channel_pruning() -> None:
    model = _unet(depth=4)
    x = torch.randn(2, 1, 32, 32)
    prune_channels(model, x, 0.5)
    new, _ = cut_inner_layers(model, levels=1)
    assert new.up[2][1].in_channels == model.down[2][-1].num_features
    assert new(x).shape == x.shape


def test_inner_layer_pruning_hits_only_inner_levels() -> None:
    model = _unet(depth=4)
    widths = {name: m.weight.shape for name, m in model.named_modules() if hasattr(m, "weight")}
    x = torch.randn(2, 1, 32, 32)
    summary = prune_inner_layers(model, x, ratio=0.75, levels=2)
    assert model.down[2][1].out_channels == 8 and model.down[3][1].out_channels == 16  # 32 -> 8, 64 -> 16
    assert model.up[2][1].out_channels == 4 and model.up[3][1].out_channels == 8  # 16 -> 4, 32 -> 8
    assert model.down[1][1].weight.shape == widths["down.1.1"]  # outer filters untouched
    assert model.up[1][1].weight.shape[1] == widths["up.1.1"][1]
    assert model.up[1][1].in_channels == 16 + 4  # its skip, plus the pruned deeper decoder output
    assert model(x).shape == x.shape
    assert summary.settings["pruned_layers"] == ["down.2.1", "up.2.1", "down.3.1", "up.3.1"]


def test_sensitivity_finds_the_planted_dead_inner_layers() -> None:
    model = _unet(depth=4)
    _kill_innermost_branch(model)
    rows = layer_sensitivity(model, torch.randn(2, 1, 32, 32), ratios=(0.5,))
    score = {row["layer"]: row["score"] for row in rows}
    assert set(score) == {"down.0.0", "down.1.1", "down.2.1", "down.3.1", "up.1.1", "up.2.1", "up.3.1"}
    assert score["down.3.1"] == pytest.approx(0.0, abs=1e-6)  # feeds only the dead branch
    assert score["up.3.1"] == pytest.approx(0.0, abs=1e-6)  # its output is zero anyway
    assert min(score["down.0.0"], score["down.1.1"], score["up.1.1"]) > 1e-3


def test_bad_levels_and_models_are_refused() -> None:
    model = _unet(depth=3)
    with pytest.raises(ConfigError) as info:
        cut_inner_layers(model, levels=2)  # a U-Net keeps at least 2 levels
    assert info.value.argument == "levels"
    with pytest.raises(ConfigError, match="levels"):
        prune_inner_layers(model, torch.randn(1, 1, 32, 32), levels=4)
    with pytest.raises(ConfigError, match="ratio"):
        prune_inner_layers(copy.deepcopy(model), torch.randn(1, 1, 32, 32), ratio=1.0)
    with pytest.raises(ConfigError) as info:
        cut_inner_layers(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    assert info.value.argument == "model"
