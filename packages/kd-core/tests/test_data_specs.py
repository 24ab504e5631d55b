"""Data specs every domain reads: tensors files and image folders, with one-line errors naming the argument."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from kd_core.data_specs import image_folder, read_tensors, tensor_splits
from kd_core.errors import ConfigError


def test_tensors_file_is_split_by_class(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", inputs=np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32),
             labels=np.arange(30) % 3)
    splits, classes, shape = tensor_splits(tmp_path / "d.npz", 0.2, 0.2, "--data")
    assert classes == ["0", "1", "2"] and shape == (4,)
    assert sorted(int(splits["test"][i]["label"]) for i in range(len(splits["test"]))) == [0, 0, 1, 1, 2, 2]


def test_bad_tensors_files_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "one.npz", inputs=np.zeros((4, 2), np.float32), labels=np.zeros(4, np.int64))
    np.savez(tmp_path / "keys.npz", x=np.zeros((4, 2), np.float32))
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    for name, words in (("one.npz", "2 classes"), ("keys.npz", "'inputs' and 'labels'"), ("junk.npz", "readable"),
                        ("missing.npz", "existing")):
        with pytest.raises(ConfigError, match=words) as info:
            read_tensors(tmp_path / name, "data.source")
        assert info.value.argument == "data.source"


def test_image_folders_without_torchvision_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # importing it now raises ImportError
    with pytest.raises(ConfigError, match="torchvision installed") as info:
        image_folder(tmp_path, 16, "--data")
    assert info.value.argument == "--data"
