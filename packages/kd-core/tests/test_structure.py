"""``kd_core.structure``: a U-Net described by module paths, checked against the model it describes."""

from __future__ import annotations

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.structure import HasUNetStructure, UNetLevel, UNetStructure, unet_structure
from torch import nn


class _TwoLevel(nn.Module):
    """A 2-level U-Net of 1×1/strided convolutions, skip first (``skip_first=False``: skip last)."""

    def __init__(self, skip_first: bool = True) -> None:
        super().__init__()
        self.skip_first = skip_first
        self.enc = nn.ModuleList([nn.Conv2d(1, 3, 2, 2), nn.Conv2d(3, 5, 2, 2)])
        self.dec = nn.ModuleList([nn.ConvTranspose2d(3 + 2, 1, 2, 2), nn.ConvTranspose2d(5, 2, 2, 2)])

    def unet_structure(self) -> UNetStructure:
        return UNetStructure((UNetLevel("enc.0", "dec.0"), UNetLevel("enc.1", "dec.1")), self.skip_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc[0](x)
        deeper = self.dec[1](self.enc[1](skip))
        return self.dec[0](torch.cat([skip, deeper] if self.skip_first else [deeper, skip], 1))


class _Compiled(nn.Module):
    """Stands for a ``torch.compile`` wrapper: the real model is ``_orig_mod``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner


def test_a_model_describes_itself_and_the_description_matches_its_forward() -> None:
    model = _TwoLevel()
    assert isinstance(model, HasUNetStructure) and not isinstance(nn.Linear(1, 1), HasUNetStructure)
    structure = unet_structure(model)
    assert structure.depth == 2 and structure.paths() == ["enc.0", "dec.0", "enc.1", "dec.1"]
    seen: dict[str, torch.Tensor] = {}
    for path in structure.paths():
        model.get_submodule(path).register_forward_pre_hook(lambda _m, args, p=path: seen.setdefault(p, args[0]))
    skips: dict[str, torch.Tensor] = {}
    for level in structure.levels:
        model.get_submodule(level.encoder).register_forward_hook(
            lambda _m, _a, out, p=level.encoder: skips.setdefault(p, out))
    model(torch.randn(2, 1, 8, 8))
    outer = structure.levels[0]
    keep, deeper = structure.split(skips[outer.encoder].shape[1], seen[outer.decoder].shape[1])
    assert torch.equal(seen[outer.decoder][:, keep], skips[outer.encoder])  # the skip comes first
    assert deeper == slice(3, 5)
    assert torch.equal(seen["dec.1"], skips["enc.1"])  # the innermost decoder reads its encoder only


def test_skip_last_convention_splits_the_other_way() -> None:
    structure = unet_structure(_TwoLevel(skip_first=False))
    assert structure.split(3, 5) == (slice(2, 5), slice(0, 2))
    assert UNetStructure(structure.levels).split(3, 5) == (slice(0, 3), slice(3, 5))
    with pytest.raises(ConfigError) as info:
        structure.split(5, 5)
    assert info.value.argument == "skip_channels"


def test_outer_levels_and_a_given_structure() -> None:
    model = _TwoLevel()
    structure = unet_structure(model).outer(1)
    assert structure.levels == (UNetLevel("enc.0", "dec.0"),) and structure.skip_first
    assert unet_structure(model, structure) is structure
    assert unet_structure(_Compiled(model)).depth == 2  # wrappers are stripped, as for taps
    with pytest.raises(ConfigError) as info:
        unet_structure(model).outer(3)
    assert info.value.argument == "depth"


def test_unknown_paths_and_models_without_a_description_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        unet_structure(_TwoLevel(), UNetStructure((UNetLevel("enc.0", "dec.0"), UNetLevel("enc.2", "dec.1"))))
    assert info.value.argument == "structure" and "enc.2" in str(info.value) and "enc.1" in str(info.value)
    with pytest.raises(ConfigError) as info:
        unet_structure(nn.Linear(2, 2))
    assert info.value.argument == "model" and "unet_structure" in str(info.value)
    with pytest.raises(ConfigError) as info:
        unet_structure("model")  # type: ignore[arg-type]
    assert info.value.argument == "model"
    with pytest.raises(ConfigError) as info:
        unet_structure(_TwoLevel(), [("enc.0", "dec.0")])  # type: ignore[arg-type]
    assert info.value.argument == "structure"


@pytest.mark.parametrize(("levels", "argument"), [
    ((), "levels"),
    ([("enc.0", "dec.0")], "levels"),
    ((UNetLevel("a", "b"), UNetLevel("c", "a")), "levels"),
])
def test_bad_descriptions_are_refused(levels: object, argument: str) -> None:
    with pytest.raises(ConfigError) as info:
        UNetStructure(levels)  # type: ignore[arg-type]
    assert info.value.argument == argument


def test_bad_levels_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        UNetLevel("", "dec.0")
    assert info.value.argument == "encoder"
    with pytest.raises(ConfigError) as info:
        UNetLevel("enc.0", 3)  # type: ignore[arg-type]
    assert info.value.argument == "decoder"
    with pytest.raises(ConfigError) as info:
        UNetStructure((UNetLevel("a", "b"),), skip_first=1)  # type: ignore[arg-type]
    assert info.value.argument == "skip_first"
    assert UNetStructure([UNetLevel("a", "b")]).levels == (UNetLevel("a", "b"),)  # a list becomes a tuple
