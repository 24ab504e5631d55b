"""Paired image-to-image sets (Pix2Pix) cut from offline photos: edges->photo, grey->photo, mask->photo.

``build_pairs(direction, size, seed)`` does, deterministically:

1. Take the photos of :func:`kd_generative.data.photos.list_sources` (default: every collection).
2. Resize each (Lanczos) so that its shorter side is ``round(context * size)`` pixels, so a crop holds about
   a third of the photo's height whatever the crop size.
3. Compute the input map of ``direction`` on the whole resized photo (:mod:`kd_generative.data.maps`).
4. Cut ``crops`` square crops of ``size`` from each photo at random positions drawn from a generator seeded
   by ``seed`` and the photo's name (so a photo's crops do not depend on which other photos are selected).
   A position whose grey crop is nearly flat (standard deviation below 6 of 255: a black border, a sky) is
   drawn again, up to 10 times; the liveliest of those draws is kept.
5. Split by *group*, never by crop: within each collection (scikit-image, opencv stills, each video) the
   groups are ordered by a hash of ``split_seed`` and their name; the first ``round(n * test_fraction)`` go
   to test, the next ``round(n * val_fraction)`` to val, the rest to train (a collection of 3 groups or more
   gives each split at least one). A group is one photo, two views of one scene, or a block of video frames.

Pairs are uint8 ``(N, C, H, W)`` arrays, cached with :mod:`kd_core.datacache` under
``$KD_DATA_HOME/pix2pix/<direction>-<size>px-<digest>/`` (``{split}-inputs.npy``, ``{split}-targets.npy``,
``crops.json`` and ``manifest.json``, whose key holds every option and the source files' SHA-256); building
the same options twice gives the same files and manifest, and the second build reads the verified cache.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kd_core import datacache
from kd_core.errors import ConfigError

from kd_generative.data.maps import DIRECTIONS, EDGE_SIGMA, SUPERPIXEL_AREA, grey_map, input_channels, input_map
from kd_generative.data.paired import SPLITS, PairedImages, PairSplit, check_dtype, to_tensor
from kd_generative.data.photos import PhotoSource, list_sources, load_photos, source_fingerprint

__all__ = ["CACHE_NAME", "FORMAT", "build_pairs", "crop_boxes", "split_groups"]

#: The folder under ``$KD_DATA_HOME`` holding the paired sets.
CACHE_NAME = "pix2pix"
#: Bumped whenever the way pairs are made changes (it is part of every cache key).
FORMAT = 1
_FLAT_STD = 6.0
_DRAWS = 10


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)
    return int(value)


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(name, "a fraction in [0, 1)", value)
    return float(value)


def _stable_words(*parts: object) -> list[int]:
    """Four 32-bit words of the SHA-256 of ``parts``: a seed that does not depend on Python's hash salt."""
    blob = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return [int.from_bytes(blob[i:i + 4], "little") for i in range(0, 16, 4)]


def split_groups(groups: dict[str, str], val_fraction: float, test_fraction: float, split_seed: int
                 ) -> dict[str, str]:
    """The split of every group: ``groups`` maps group -> collection; returns group -> split name.

    Within a collection of ``n`` groups, ordered by a hash of ``split_seed`` and the group's name:
    ``round(n * test_fraction)`` test, then ``round(n * val_fraction)`` val, the rest train. With ``n >= 3``
    val and test get at least one each (for a nonzero fraction); train always keeps one.
    """
    splits: dict[str, str] = {}
    for collection in dict.fromkeys(groups.values()):
        members = sorted((g for g, c in groups.items() if c == collection),
                         key=lambda g: hashlib.sha256(f"{split_seed}\x1f{g}".encode()).hexdigest())
        n = len(members)
        n_test = min(max(int(np.floor(n * test_fraction + 0.5)), int(n >= 3 and test_fraction > 0)), n - 1)
        n_val = min(max(int(np.floor(n * val_fraction + 0.5)), int(n >= 3 and val_fraction > 0)), n - 1 - n_test)
        for position, group in enumerate(members):
            splits[group] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    return splits


def crop_boxes(grey: np.ndarray, size: int, crops: int, seed: int, name: str) -> list[tuple[int, int]]:
    """Top-left corners of ``crops`` crops of ``size`` in a grey image, avoiding flat ones (see the module)."""
    height, width = grey.shape
    rng = np.random.default_rng(np.random.SeedSequence([seed, *_stable_words(name)]))
    boxes = []
    for _ in range(crops):
        best, best_std = (0, 0), -1.0
        for _ in range(_DRAWS):
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
            std = float(grey[top:top + size, left:left + size].std())
            if std > best_std:
                best, best_std = (top, left), std
            if std >= _FLAT_STD:
                break
        boxes.append(best)
    return boxes


def _resize(photo: np.ndarray, short_side: int) -> np.ndarray:
    from PIL import Image

    height, width = photo.shape[:2]
    scale = short_side / min(height, width)
    shape = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    return np.asarray(Image.fromarray(photo).resize(shape, Image.Resampling.LANCZOS), dtype=np.uint8)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _make(sources: list[PhotoSource], direction: str, size: int, crops: int, seed: int, short_side: int,
          assignment: dict[str, str]) -> dict[str, bytes]:
    """Cut every pair and return the cache files (arrays and ``crops.json``)."""
    channels = input_channels(direction)
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {s: ([], []) for s in SPLITS}
    rows = []
    for source, photo in zip(sources, load_photos(sources)):
        resized = _resize(photo, short_side)
        inputs = input_map(resized, direction)
        split = assignment[source.group]
        for top, left in crop_boxes(grey_map(resized), size, crops, seed, source.name):
            window = np.s_[top:top + size, left:left + size]
            parts[split][0].append(inputs[window].transpose(2, 0, 1))
            parts[split][1].append(resized[window].transpose(2, 0, 1))
            rows.append({"split": split, "source": source.name, "group": source.group, "top": top, "left": left,
                         "height": int(resized.shape[0]), "width": int(resized.shape[1])})
    files: dict[str, bytes] = {}
    for split, (ins, outs) in parts.items():
        empty_in, empty_out = np.zeros((0, channels, size, size), np.uint8), np.zeros((0, 3, size, size), np.uint8)
        files[f"{split}-inputs.npy"] = _npy(np.stack(ins) if ins else empty_in)
        files[f"{split}-targets.npy"] = _npy(np.stack(outs) if outs else empty_out)
    files["crops.json"] = (json.dumps(rows, indent=0, sort_keys=True) + "\n").encode()
    return files


def _assemble(direction: str, size: int, files: dict[str, bytes], directory: Path, dtype: str,
              from_cache: bool) -> PairedImages:
    rows = json.loads(files["crops.json"])
    splits = {}
    for split in SPLITS:
        inputs = np.load(io.BytesIO(files[f"{split}-inputs.npy"]), allow_pickle=False)
        targets = np.load(io.BytesIO(files[f"{split}-targets.npy"]), allow_pickle=False)
        names = tuple(r["source"] for r in rows if r["split"] == split)
        splits[split] = PairSplit(to_tensor(inputs, dtype), to_tensor(targets, dtype), names)
    manifest = json.loads((directory / datacache.MANIFEST).read_text())
    return PairedImages(direction, size, splits["train"], splits["val"], splits["test"], manifest, directory,
                        from_cache)


def build_pairs(direction: str, size: int = 64, seed: int = 0, *, crops: int = 8,
                sources: Sequence[str] | None = None, frame_step: int | None = None, context: float = 3.0,
                val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 0, multiple: int = 1,
                dtype: str = "float32", opencv_dir: str | Path | None = None, rebuild: bool = False
                ) -> PairedImages:
    """The paired set of ``direction`` (``"edges"``, ``"grey"`` or ``"mask"``, each to the colour photo).

    ``size``: crop side in pixels, a multiple of ``multiple`` (a U-Net of depth d needs 2**d); ``seed``:
    crop positions; ``crops``: crops per photo or kept video frame; ``sources`` and ``frame_step``: which
    photos (see :func:`~kd_generative.data.photos.list_sources`); ``context``: the resized photo's shorter
    side over ``size``; ``split_seed``, ``val_fraction``, ``test_fraction``: the split by group;
    ``dtype``: ``"float32"`` in [-1, 1] or ``"uint8"``; ``rebuild``: ignore a cache. Inputs have 1 channel
    (edges: 1 on an edge, -1 elsewhere; grey) or 3 (mask); targets 3.
    """
    if direction not in DIRECTIONS:
        raise ConfigError("direction", f"one of {', '.join(DIRECTIONS)}", direction)
    size = _check_int("size", size, 8)
    multiple = _check_int("multiple", multiple, 1)
    if size % multiple:
        raise ConfigError("size", f"a multiple of {multiple} (multiple={multiple})", size)
    seed = _check_int("seed", seed, 0)
    split_seed = _check_int("split_seed", split_seed, 0)
    crops = _check_int("crops", crops, 1)
    if isinstance(context, bool) or not isinstance(context, int | float) or context < 1.0:
        raise ConfigError("context", "a number >= 1 (the photo's shorter side over the crop size)", context)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("val_fraction + test_fraction", "less than 1 (train needs photos too)",
                          val_fraction + test_fraction)
    check_dtype(dtype)
    picked = list_sources(sources, frame_step=frame_step, opencv_dir=opencv_dir)
    short_side = round(context * size)
    assignment = split_groups({s.group: s.collection for s in picked}, val_fraction, test_fraction, split_seed)
    key = {"format": FORMAT, "direction": direction, "size": size, "seed": seed, "crops": crops,
           "short_side": short_side, "split_seed": split_seed, "val_fraction": val_fraction,
           "test_fraction": test_fraction, "edge_sigma": EDGE_SIGMA, "superpixel_area": SUPERPIXEL_AREA,
           "flat_std": _FLAT_STD, "draws": _DRAWS, "sources": [s.name for s in picked],
           "splits": assignment, "inputs": source_fingerprint(picked)}
    directory = datacache.data_home() / CACHE_NAME / f"{direction}-{size}px-{datacache.digest(**key)}"
    if not rebuild and (files := datacache.load(directory, key)) is not None:
        return _assemble(direction, size, files, directory, dtype, from_cache=True)
    files = _make(picked, direction, size, crops, seed, short_side, assignment)
    datacache.store(directory, key, files)
    return _assemble(direction, size, files, directory, dtype, from_cache=False)
