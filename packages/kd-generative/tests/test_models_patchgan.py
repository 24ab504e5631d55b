"""The PatchGAN discriminator: its receptive field (computed and measured by gradients), patch-map shapes, the
conditional input, and clear errors."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_generative.models.patchgan import (
    PatchDiscriminator,
    build_patchgan,
    min_input_size,
    output_size,
    receptive_field,
)
from torch import nn


def test_receptive_field_is_70_for_the_paper_default() -> None:
    assert receptive_field() == receptive_field(3) == 70
    assert [receptive_field(n) for n in (1, 2, 4)] == [16, 34, 142]  # pix2pix's 16×16, 34×34 and 142×142 GANs
    assert build_patchgan(base=2).receptive_field() == 70
    assert PatchDiscriminator(1, 1, base=2, n_layers=1).receptive_field() == 16


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_one_logit_sees_exactly_its_receptive_field(n_layers: int) -> None:
    """Gradients of one central logit reach exactly a receptive_field × receptive_field input window."""
    torch.manual_seed(0)
    model = PatchDiscriminator(1, 1, base=4, n_layers=n_layers).eval().double()
    condition = torch.randn(1, 1, 192, 192, dtype=torch.float64, requires_grad=True)
    image = torch.randn(1, 1, 192, 192, dtype=torch.float64, requires_grad=True)
    logits = model(condition, image)
    centre = logits.shape[-1] // 2
    logits[0, 0, centre, centre].backward()
    reached = (condition.grad[0, 0] != 0) | (image.grad[0, 0] != 0)
    rows, cols = reached.any(dim=1).nonzero(), reached.any(dim=0).nonzero()
    assert int(rows.min()) > 0 and int(rows.max()) < 191  # the window lies inside the image
    assert int(rows.max() - rows.min()) + 1 == receptive_field(n_layers)
    assert int(cols.max() - cols.min()) + 1 == receptive_field(n_layers)


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_patch_map_shapes(n_layers: int, size: int) -> None:
    model = PatchDiscriminator(3, 2, base=4, n_layers=n_layers).eval()
    if size < min_input_size(n_layers):  # 32 < 48 for n_layers=4: not even one patch
        with pytest.raises(ConfigError, match=f"at least {min_input_size(n_layers)}"):
            model(torch.randn(2, 3, size, size), torch.randn(2, 2, size, size))
        return
    with torch.no_grad():
        logits = model(torch.randn(2, 3, size, size), torch.randn(2, 2, size, size))
    side = output_size(size, n_layers)
    assert logits.shape == (2, 1, side, side)
    assert output_size(256, 3) == 30  # the paper's 30×30 patch map for 256×256 images


def test_layout_and_conditional_input() -> None:
    model = build_patchgan(in_channels=3, out_channels=3, base=4)
    convs = [m for m in model.net if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 6  # concat(condition, image)
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 1]  # C64-C128-C256-C512 at base 64, then 1
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert not isinstance(model.net[1], nn.BatchNorm2d)  # no norm on the first layer
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.net) == 3
    torch.manual_seed(0)
    x, y = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.eval()
        assert not torch.equal(model(x, y), model(torch.randn(1, 3, 64, 64), y))  # the condition matters


def test_bad_inputs_and_arguments_name_themselves() -> None:
    model = PatchDiscriminator(3, 1, base=2).eval()
    with pytest.raises(ConfigError) as info:
        model(torch.randn(1, 1, 64, 64), torch.randn(1, 1, 64, 64))
    assert info.value.argument == "condition"
    with pytest.raises(ConfigError) as info:
        model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    assert info.value.argument == "image"
    with pytest.raises(ConfigError) as info:
        model(torch.randn(1, 3, 64, 64), torch.randn(1, 1, 32, 32))
    assert info.value.argument == "image"
    assert min_input_size(3) == 24 and output_size(24, 3) == 1 and output_size(23, 3) < 1
    with pytest.raises(ConfigError) as info:
        model(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 16))
    assert info.value.argument == "image" and "24" in str(info.value)
    for kwargs, argument in (({"n_layers": 0}, "n_layers"), ({"base": 0}, "base"), ({"in_channels": True},
                                                                                     "in_channels")):
        with pytest.raises(ConfigError) as info:
            build_patchgan(**kwargs)
        assert info.value.argument == argument
    with pytest.raises(ConfigError) as info:
        receptive_field(0)
    assert info.value.argument == "n_layers"
