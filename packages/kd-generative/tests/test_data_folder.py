"""A user's own pairs from two folders: reading, fitting to the size, and every bad input as a kd error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError, DataError, KDError
from kd_generative.data import read_folder_pairs
from PIL import Image


def _write(path: Path, width: int = 40, height: int = 30, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    pixels[:, : width // 2, 0] = 200  # a red left half, so crops and resizes can be checked
    Image.fromarray(pixels).save(path)
    return path


def _folders(tmp_path: Path, names: list[str], width: int = 40, height: int = 30) -> tuple[Path, Path]:
    a, b = tmp_path / "A", tmp_path / "B"
    for i, name in enumerate(names):
        _write(a / f"{name}.png", width, height, value=10 * i)
        _write(b / f"{name}.jpg", width, height, value=10 * i + 5)
    return a, b


def test_pairs_are_matched_by_name_sorted_and_fitted_to_the_size(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["b", "a", "c"])
    (a / "notes.txt").write_text("not an image")  # other files are ignored
    pairs = read_folder_pairs(a, b, 16, multiple=8)
    assert pairs.sources == ("a", "b", "c")
    assert pairs.inputs.shape == (3, 3, 16, 16) and pairs.targets.shape == (3, 3, 16, 16)
    assert pairs.inputs.dtype == torch.float32 and pairs.inputs.min() >= -1.0 and pairs.inputs.max() <= 1.0
    raw = read_folder_pairs(a, b, 30, fit="crop", dtype="uint8")
    assert raw.inputs.dtype == torch.uint8 and raw.inputs.shape == (3, 3, 30, 30)
    # "a" was written second (value 10): the centre 30x30 of 40x30 keeps 15 red and 15 plain columns
    assert raw.inputs[0, 0, 0].tolist() == [200] * 15 + [10] * 15
    assert raw.inputs[1, 2, 0, -1] == 0 and abs(int(raw.targets[1, 2, 0, -1]) - 5) <= 2  # "b": PNG 0, JPEG ~5
    grey = read_folder_pairs(a, b, 16, in_channels=1)
    assert grey.inputs.shape == (3, 1, 16, 16) and grey.targets.shape == (3, 3, 16, 16)
    assert grey[0]["input"].shape == (1, 16, 16)


def _error(kind: type[KDError], *args: object, **kwargs: object) -> str:
    with pytest.raises(kind) as info:
        read_folder_pairs(*args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_a_missing_folder(tmp_path: Path) -> None:
    a, _ = _folders(tmp_path, ["x"])
    message = _error(DataError, a, tmp_path / "missing", 16)
    assert message.startswith("dir_b: expected an existing folder of images, received") and "missing" in message


def test_a_folder_without_images(tmp_path: Path) -> None:
    _, b = _folders(tmp_path, ["x"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    message = _error(DataError, empty, b, 16)
    assert message.startswith("dir_a: expected a folder holding images Pillow reads") and "no image files" in message


def test_unmatched_names_are_listed_on_each_side(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["shared"])
    for i in range(7):
        _write(a / f"only_a{i}.png")
    _write(b / "only_b.png")
    message = _error(DataError, a, b, 16)
    assert message.startswith("dir_a, dir_b: expected the same file names in both folders")
    assert "only in dir_a: 7 (only_a0, only_a1, only_a2, only_a3, only_a4, ...)" in message
    assert "only in dir_b: 1 (only_b)" in message


def test_two_files_of_one_name_in_a_folder(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["x"])
    _write(a / "x.jpg")
    message = _error(DataError, a, b, 16)
    assert message.startswith("dir_a: expected one image per file name") and "x.jpg and x.png" in message


def test_a_pair_of_different_sizes(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["x", "y"])
    _write(b / "y.jpg", 41, 30)
    message = _error(DataError, a, b, 16)
    assert message == "pair 'y': expected A and B images of the same size, received 'A 40x30, B 41x30'"


def test_an_empty_or_unreadable_image(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["x", "y"])
    (a / "y.png").write_bytes(b"")
    assert _error(DataError, a, b, 16) == "dir_a file y.png: expected a non-empty image file, received '0 bytes'"
    (a / "y.png").write_bytes(b"this is not a png")
    message = _error(DataError, a, b, 16)
    assert message.startswith("dir_a file y.png: expected an image Pillow can read, received")


def test_a_size_larger_than_the_images(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["x"])
    _write(a / "small.png", 24, 20)
    _write(b / "small.png", 24, 20)
    message = _error(ConfigError, a, b, 32)
    assert message.startswith("size: expected at most 20, the shorter side of the smallest image (small, 24x20")
    assert message.endswith("received 32")


def test_a_size_not_divisible_by_the_multiple(tmp_path: Path) -> None:
    a, b = _folders(tmp_path, ["x"])
    assert _error(ConfigError, a, b, 20, 8) == "size: expected a multiple of 8 (multiple=8), received 20"
    assert _error(ConfigError, a, b, 16, in_channels=2).startswith("in_channels: expected 1")
    assert _error(ConfigError, a, b, 16, fit="stretch").startswith("fit: expected one of resize, crop")
