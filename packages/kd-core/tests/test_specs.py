"""User specs: scheme:value strings, trusted module:function builders, and weights files that must fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kd_core.errors import ConfigError
from kd_core.specs import call_with_accepted, is_builder_spec, load_weights_into, resolve_builder, split_spec
from safetensors.torch import save_file
from torch import nn


def test_split_spec() -> None:
    assert split_spec("imagefolder:/data/x", "data.source", ("imagefolder", "csv")) == ("imagefolder", "/data/x")
    for bad in ("nope:/x", "imagefolder:", "plain", 3):
        with pytest.raises(ConfigError) as info:
            split_spec(bad, "data.source", ("imagefolder", "csv"))
        assert info.value.argument == "data.source"


def test_builders_are_imported_from_trusted_packages_only() -> None:
    assert is_builder_spec("torchvision.models:resnet18") and not is_builder_spec("a.b")
    assert not is_builder_spec("a:1b") and not is_builder_spec("a..b:c")
    assert resolve_builder("torchvision.models:resnet18", "student.model") is not None
    with pytest.raises(ConfigError, match="--trust os") as info:
        resolve_builder("os:system", "student.model")
    assert info.value.argument == "student.model"
    assert resolve_builder("json:dumps", "x", trusted=("json",)) is not None
    with pytest.raises(ConfigError, match="importable"):
        resolve_builder("json:no_such_function", "x", trusted=("json",))


def test_call_with_accepted_passes_what_the_signature_takes() -> None:
    def named(num_classes: int) -> int:
        return num_classes

    def loose(**kwargs: int) -> dict:
        return kwargs

    assert call_with_accepted(named, {"num_classes": 3, "in_channels": 1}) == 3
    assert call_with_accepted(loose, {"num_classes": 3, "in_channels": 1}, through_kwargs=("num_classes",)) == \
        {"num_classes": 3}


def test_weights_must_fit(tmp_path: Path) -> None:
    model = nn.Linear(4, 3)
    save_file({"weight": torch.ones(3, 4), "bias": torch.zeros(3)}, str(tmp_path / "ok.safetensors"))
    assert torch.equal(load_weights_into(model, tmp_path / "ok.safetensors", "teacher.weights").weight,
                       torch.ones(3, 4))
    save_file({"weight": torch.ones(2, 4), "extra": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError) as info:
        load_weights_into(model, tmp_path / "bad.safetensors", "teacher.weights")
    message = str(info.value)
    assert info.value.argument == "teacher.weights"
    assert "1 missing" in message and "1 unexpected" in message and "(2, 4) vs (3, 4)" in message
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="readable"):
        load_weights_into(model, tmp_path / "junk.safetensors", "teacher.weights")
    with pytest.raises(ConfigError, match="existing"):
        load_weights_into(model, tmp_path / "missing.safetensors", "teacher.weights")
