"""Cut Inner Layers on a U-Net described by ``kd_core.structure``: sensitivity, inner-layer filter pruning,
layer cutting and the fold of the removed branch (the ``make_unet`` fixture is a tiny Pix2Pix-shaped U-Net)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from kd_core.errors import ConfigError
from kd_core.structure import UNetLevel, UNetStructure
from kd_edge.prune.structured import prune_channels
from kd_edge.prune.unet_cut import cut_inner_layers, layer_sensitivity, prune_inner_layers, unet_layer_names
from torch import nn


def _kill_innermost_branch(model: nn.Module) -> None:
    """Make the innermost decoder output exactly zero (in eval mode), whatever its input."""
    inner = model.up[-1]
    with torch.no_grad():
        inner[1].weight.zero_()
        inner[1].bias.zero_()
        inner[2].bias.zero_()  # BatchNorm shift; running mean is 0, so the output is 0


def _shift_innermost_output(model: nn.Module, x: torch.Tensor, shift: float) -> None:
    """Give the innermost decoder's BatchNorm the statistics of its input on ``x`` (as a trained one has them)
    and the shift ``shift``: its output is then about N(shift, 1) per channel, both signs."""
    norm, pre = model.up[-1][2], []
    handle = model.up[-1][1].register_forward_hook(lambda _m, _a, out: pre.append(out))
    with torch.no_grad():
        model.eval()(x)
        handle.remove()
        norm.running_mean.copy_(pre[0].mean(dim=(0, 2, 3)))
        norm.running_var.copy_(pre[0].var(dim=(0, 2, 3)))
        norm.bias.fill_(shift)


def _channel_means(model: nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean over batch and positions of the output of the module at ``path`` (eval mode)."""
    seen = []
    handle = model.get_submodule(path).register_forward_hook(lambda _m, _a, out: seen.append(out))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0].mean(dim=(0, 2, 3))


def test_cut_keeps_every_shape_valid_and_runs(make_unet) -> None:
    model = make_unet(depth=5)
    x = torch.randn(2, 1, 32, 32)
    new, summary = cut_inner_layers(model, levels=2, example_inputs=x)
    assert new.depth == 3 and len(new.down) == len(new.up) == 3
    assert new.unet_structure().depth == 3
    assert new(x).shape == x.shape
    assert new(torch.randn(1, 1, 8, 8)).shape == (1, 1, 8, 8)  # divisibility is now 2**3
    assert new.up[2][1].in_channels == new.down[2][1].out_channels == 32  # innermost reads only its skip
    assert new.up[2][1].weight.shape[0] == 32
    assert summary.params_after < summary.params_before and summary.macs_after < summary.macs_before
    assert summary.settings["removed"] == ["down.4", "up.4", "down.3", "up.3"]
    assert summary.settings["reconnected"] == "up.2.1" and summary.settings["branch_mean_folded_into"] == "bias"
    for name in ("down.0.0.weight", "down.1.1.weight", "down.2.2.running_var", "up.0.1.weight", "up.1.1.weight",
                 "up.2.2.weight"):
        assert torch.equal(new.state_dict()[name], model.state_dict()[name])  # kept weights transfer unchanged
    assert torch.equal(new.up[2][1].weight, model.up[2][1].weight[:32])
    assert model.depth == 5 and model.up[2][1].in_channels == 64 and not model.training  # the original is untouched


def test_cut_of_a_dead_branch_changes_nothing(make_unet) -> None:
    model = make_unet(depth=4)
    _kill_innermost_branch(model)
    x = torch.randn(3, 1, 32, 32)
    new, _ = cut_inner_layers(model, levels=1, example_inputs=x)
    torch.testing.assert_close(new(x), model(x))


def test_fold_matches_the_removed_branch_mean_when_it_takes_both_signs(make_unet) -> None:
    """The removed branch's output h (a BatchNorm's) is shifted so that most of it is negative: the decoder
    that read it applies ReLU first, so E[ReLU(h)], E[h] and ReLU(E[h]) all differ, and only a fold of
    E[W ⊛ ReLU(h)] keeps the reconnected layer's mean output."""
    model = make_unet(depth=3)
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    _shift_innermost_output(model, x, -0.3)
    h = _channel_means(model, "up.2", x)  # per-channel E[h]
    branch = []
    handle = model.up[2].register_forward_hook(lambda _m, _a, out: branch.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    positive = (branch[0] > 0).double().mean().item()
    assert 0.2 < positive < 0.5 and (h < 0).all()  # both signs; the mean itself negative everywhere

    new, summary = cut_inner_layers(model, levels=1, example_inputs=x)
    assert summary.settings["branch_mean_folded_into"] == "bias"
    for path in ("up.1.1", "up.1.2"):  # the reconnected ConvTranspose, and its BatchNorm (eval: affine)
        torch.testing.assert_close(_channel_means(new, path, x), _channel_means(model, path, x),
                                   atol=1e-5, rtol=1e-5)

    # the folds of E[h] and of ReLU(E[h]) miss that mean by far more than the tolerance
    deconv, skip = model.up[1][1], model.down[1][1].out_channels
    reference = _channel_means(model, "up.1.1", x)
    kept_only = F.conv_transpose2d(F.relu(torch.cat([model.down[1](model.down[0](x)),
                                                     torch.zeros_like(branch[0])], 1)),
                                   deconv.weight.detach(), deconv.bias.detach(), 2, 1).mean(dim=(0, 2, 3))
    for wrong in (branch[0].mean(dim=0, keepdim=True), F.relu(branch[0].mean(dim=(0, 2, 3), keepdim=True))
                  .expand_as(branch[0][:1])):
        folded = F.conv_transpose2d(wrong, deconv.weight[skip:].detach(), None, 2, 1).mean(dim=(0, 2, 3))
        assert (kept_only + folded - reference).abs().max() > 1e-2


def test_fold_without_a_bias_goes_into_the_following_batchnorm(make_unet) -> None:
    model = make_unet(depth=3, bias=False)
    x = torch.randn(4, 1, 32, 32)
    _shift_innermost_output(model, x, -0.2)
    new, summary = cut_inner_layers(model, levels=1, example_inputs=x)
    assert summary.settings["branch_mean_folded_into"] == "running_mean"
    assert new.up[1][1].bias is None
    torch.testing.assert_close(_channel_means(new, "up.1.2", x), _channel_means(model, "up.1.2", x),
                               atol=1e-5, rtol=1e-5)


def test_cut_after_channel_pruning(make_unet) -> None:
    model = make_unet(depth=4)
    x = torch.randn(2, 1, 32, 32)
    prune_channels(model, x, 0.5)
    new, _ = cut_inner_layers(model, levels=1, example_inputs=x)
    assert new.up[2][1].in_channels == model.down[2][-1].num_features
    assert new(x).shape == x.shape


def test_inner_layer_pruning_hits_only_inner_levels(make_unet) -> None:
    model = make_unet(depth=4)
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


def test_layer_names_follow_the_structure(make_unet) -> None:
    names = unet_layer_names(make_unet(depth=3))
    assert names == {"down.0.0": (0, "encoder"), "up.0.1": (0, "decoder"), "down.1.1": (1, "encoder"),
                     "up.1.1": (1, "decoder"), "down.2.1": (2, "encoder"), "up.2.1": (2, "decoder")}


def test_sensitivity_finds_the_planted_dead_inner_layers(make_unet) -> None:
    model = make_unet(depth=4)
    _kill_innermost_branch(model)
    rows = layer_sensitivity(model, torch.randn(2, 1, 32, 32), ratios=(0.5,))
    score = {row["layer"]: row["score"] for row in rows}
    assert set(score) == {"down.0.0", "down.1.1", "down.2.1", "down.3.1", "up.1.1", "up.2.1", "up.3.1"}
    assert score["down.3.1"] == pytest.approx(0.0, abs=1e-6)  # feeds only the dead branch
    assert score["up.3.1"] == pytest.approx(0.0, abs=1e-6)  # its output is zero anyway
    assert min(score["down.0.0"], score["down.1.1"], score["up.1.1"]) > 1e-3


def test_a_given_structure_is_used_and_checked(make_unet) -> None:
    model = make_unet(depth=4)
    x = torch.randn(2, 1, 32, 32)
    levels = tuple(UNetLevel(f"down.{i}", f"up.{i}") for i in range(4))
    new, _ = cut_inner_layers(model, 1, x, structure=UNetStructure(levels))
    assert new.depth == 3
    with pytest.raises(ConfigError) as info:  # a level that is not the last item of its list cannot go
        cut_inner_layers(model, 1, x, structure=UNetStructure(levels[:3]))
    assert info.value.argument == "model" and "down.2" in str(info.value)
    with pytest.raises(ConfigError) as info:
        cut_inner_layers(model, 1, x, structure=UNetStructure((*levels[:3], UNetLevel("down.9", "up.3"))))
    assert info.value.argument == "structure" and "down.9" in str(info.value)


def test_bad_levels_inputs_and_models_are_refused(make_unet) -> None:
    model = make_unet(depth=3)
    x = torch.randn(1, 1, 32, 32)
    for levels in (3, 0, True, "1"):
        with pytest.raises(ConfigError) as info:
            cut_inner_layers(model, levels=levels, example_inputs=x)  # a U-Net keeps at least 1 level
        assert info.value.argument == "levels"
    with pytest.raises(ConfigError) as info:
        cut_inner_layers(model, levels=1)  # the fold is measured on calibration inputs
    assert info.value.argument == "example_inputs"
    with pytest.raises(ConfigError, match="levels"):
        prune_inner_layers(model, x, levels=4)
    with pytest.raises(ConfigError, match="ratio"):
        prune_inner_layers(copy.deepcopy(model), x, ratio=1.0)
    with pytest.raises(ConfigError) as info:
        cut_inner_layers(nn.Linear(2, 2), example_inputs=torch.randn(1, 2))
    assert info.value.argument == "model" and "unet_structure" in str(info.value)
