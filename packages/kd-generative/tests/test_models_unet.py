"""The Pix2Pix U-Net generator: shapes over depths and sizes, the paper's layout, its structure description, and
clear errors for a depth or size that cannot work."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.structure import UNetLevel, unet_structure
from kd_generative.models.unet import UNetGenerator, build_unet, unet_widths
from torch import nn


@pytest.mark.parametrize("depth", [3, 4, 5, 6])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_output_has_the_input_size_wherever_the_depth_divides_it(depth: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_unet(in_channels=3, out_channels=2, depth=depth, base=4).eval()
    x = torch.randn(2, 3, size, size)
    if size % 2**depth:
        with pytest.raises(ConfigError) as info:
            model(x)
        assert info.value.argument == "input" and f"2**depth = {2**depth}" in str(info.value)
        return
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1.0  # Tanh image head


def test_non_square_inputs_need_each_side_divisible() -> None:
    model = build_unet(1, 1, depth=3, base=2).eval()
    assert model(torch.randn(1, 1, 16, 40)).shape == (1, 1, 16, 40)
    with pytest.raises(ConfigError, match="divisible"):
        model(torch.randn(1, 1, 16, 36))
    with pytest.raises(ConfigError) as info:
        model(torch.randn(1, 3, 16, 16))  # wrong channel count
    assert info.value.argument == "input"


def test_widths_and_layout_follow_the_paper() -> None:
    assert unet_widths(8, 64, 8) == [64, 128, 256, 512, 512, 512, 512, 512]  # C64-C128-C256-C512-C512-...
    model = build_unet(in_channels=3, out_channels=3, depth=8, base=2)
    assert [level[-1].num_features if isinstance(level[-1], nn.BatchNorm2d) else level[-1].out_channels
            for level in model.down] == unet_widths(8, 2, 8)
    assert isinstance(model.down[0][0], nn.Conv2d) and len(model.down[0]) == 1  # no activation, no norm
    assert [type(m) for m in model.down[3]] == [nn.LeakyReLU, nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in model.down[7]] == [nn.LeakyReLU, nn.Conv2d]  # the innermost encoder has no norm
    assert [type(m) for m in model.up[0]] == [nn.ReLU, nn.ConvTranspose2d, nn.Tanh]
    assert model.up[7][1].in_channels == 16 and model.up[6][1].in_channels == 32  # concat skips double widths
    dropped = [level for level, block in enumerate(model.up) if any(isinstance(m, nn.Dropout) for m in block)]
    assert dropped == [5, 6, 7]  # CD512 ×3: the three innermost decoders
    assert all(m.p == 0.5 for m in model.modules() if isinstance(m, nn.Dropout))
    assert all(isinstance(block[1], nn.ConvTranspose2d) for block in model.up)  # stable names: up.i.1


def test_dropout_is_a_parameter_and_never_on_the_image_head() -> None:
    assert [i for i, b in enumerate(build_unet(1, 1, depth=3, base=2).up)
            if any(isinstance(m, nn.Dropout) for m in b)] == [1, 2]
    model = build_unet(1, 1, depth=4, base=2, dropout=0.2, dropout_levels=1)
    assert [(i, m.p) for i, b in enumerate(model.up) for m in b if isinstance(m, nn.Dropout)] == [(3, 0.2)]
    assert not any(isinstance(m, nn.Dropout) for m in build_unet(1, 1, depth=4, base=2, dropout=0.0).modules())
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    model = build_unet(1, 1, depth=4, base=4)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: no dropout
        model.train()
        assert not torch.equal(model(x), model(x))  # the paper's noise source, when kept on


def test_innermost_norm_and_depth_one() -> None:
    model = build_unet(1, 1, depth=3, base=2, innermost_norm=True)
    assert isinstance(model.down[2][-1], nn.BatchNorm2d)
    single = build_unet(2, 1, depth=1, base=4).eval()
    assert single(torch.randn(1, 2, 6, 6)).shape == (1, 1, 6, 6)
    assert single.up[0][1].in_channels == 4  # the only level: its decoder reads its encoder alone


def test_structure_description_names_every_level() -> None:
    model = build_unet(1, 1, depth=4, base=2)
    structure = unet_structure(model)
    assert structure.levels == tuple(UNetLevel(f"down.{i}", f"up.{i}") for i in range(4)) and structure.skip_first
    assert model.depth == 4 and model.input_shape == (1, 32, 32)
    assert build_unet(3, 3, depth=6, base=1).input_shape == (3, 64, 64)
    assert build_unet(3, 3, depth=3, base=1, image_size=24).input_shape == (3, 24, 24)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"depth": 0}, "depth"),
    ({"depth": -2}, "depth"),
    ({"depth": True}, "depth"),
    ({"depth": 2.0}, "depth"),
    ({"base": 0}, "base"),
    ({"max_mult": 0}, "max_mult"),
    ({"in_channels": 0}, "in_channels"),
    ({"out_channels": "3"}, "out_channels"),
    ({"depth": 3, "widths": [8, 16]}, "widths"),
    ({"depth": 2, "widths": [8, 0]}, "widths"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"dropout_levels": -1}, "dropout_levels"),
    ({"innermost_norm": "yes"}, "innermost_norm"),
    ({"depth": 4, "image_size": 40}, "image_size"),
    ({"image_size": 0}, "image_size"),
])
def test_bad_arguments_name_themselves(kwargs: dict, argument: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_unet(**{"depth": 3, "base": 2, **kwargs})
    assert info.value.argument == argument


def test_a_size_the_depth_cannot_take_says_which_depth_would() -> None:
    with pytest.raises(ConfigError) as info:
        build_unet(1, 1, depth=5, base=2, image_size=48)  # 48 = 16 · 3: depth 4 at most
    assert "2**depth = 32" in str(info.value) and "depth <= 4" in str(info.value)
    with pytest.raises(ConfigError) as info:
        UNetGenerator(1, 1, [])
    assert info.value.argument == "widths"
